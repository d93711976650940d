import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorReply, createClient, createCluster, type RedisClientType, type RedisClusterType } from '@redis/client';
import type { Durability, StoreSpec } from '../../shared/config.js';
import type { Logger } from '../../shared/log.js';
import { idCount, type IdMap } from './id-map.js';
import type { Member } from './ownership.js';
import { redisPersistence, describePersistence, type RedisPersistence } from './redis-persistence.js';
import type { PersistOptions, Store, StoreStatus } from './store.js';
import { withoutPassword } from '../../shared/without-password.js';

/** Ids per SADD: big enough to amortise a command, small enough to keep one reply quick. */
const IDS_PER_COMMAND = 1000;
/** Commands in flight at once in a persist (node-redis pipelines the commands of one tick). */
const COMMANDS_IN_FLIGHT = 256;
/** A count waits this long for Redis before the client gets 503 storage_unavailable. */
const COUNT_TIMEOUT_MS = 2000;
/** A window of SADDs waits this long for Redis before its tenants are retried at a later round. */
const PERSIST_TIMEOUT_MS = 10_000;
/** Reconnection backoff: from this, doubling up to RECONNECT_MAX_MS, for as long as Redis stays away. */
const RECONNECT_FIRST_MS = 50;
const RECONNECT_MAX_MS = 2000;
/** A connection attempt gives up after this long (then the backoff applies). */
const CONNECT_TIMEOUT_MS = 2000;
/** How long a count waits for a worker's very first connection to Redis before answering 503. */
const FIRST_CONNECTION_WAIT_MS = 3000;

/** Redis could not be reached or did not answer: nothing about the data, only about the moment. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

/**
 * The Redis key of a tenant's set: `countapp:{<tenant>}` with `%`, `{` and `}` of the tenant
 * percent-encoded. Any tenant string maps to its own key (the encoding is reversible), and
 * the braces are a Redis Cluster hash tag holding exactly the tenant, so every key of one
 * tenant lands on one slot.
 */
export function tenantKey(tenant: string): string {
  return `countapp:{${tenant.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}}`;
}

type RedisSpec = Extract<StoreSpec, { kind: 'redis' }>;
type Connection = RedisClientType | RedisClusterType;

export interface RedisStoreOptions {
  readonly spec: RedisSpec;
  readonly log: Logger;
  /** The worker's `durability` now: the persistence check says whether Redis keeps up with it. */
  readonly durability: () => Durability;
}

function reason(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return reason(err.errors[0]);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message;
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailableError(`Redis did not answer ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The store of record on Redis (one node) or a Redis Cluster: a tenant is a set
 * (`tenantKey`), a persist is one SADD per tenant and chunk, pipelined, and a count is
 * SCARD — every worker, on any host, answers the same number, and it never goes down
 * while Redis keeps what it acknowledged (see redis-persistence.ts for the settings that
 * takes). An id is persisted once Redis answered its SADD: then it is visible to every
 * worker at once. While Redis is unreachable, persists fail (the ids stay pending and in
 * the write-ahead log, and later rounds retry them), counts throw StoreUnavailableError
 * (503 storage_unavailable), and the client reconnects with backoff by itself.
 */
export class RedisStore implements Store {
  readonly kind = 'redis';
  readonly #options: RedisStoreOptions;
  readonly #log: Logger;
  readonly #where: string;
  readonly #connection: Connection;
  /** Set while a Cluster connection is being (re)made; node-redis retries a single node by itself. */
  #connecting: Promise<void> | undefined;
  #reachable = false;
  /** The last failure, said once per outage. */
  #outage: string | undefined;
  #persistence: RedisPersistence | undefined;
  #members = 0;
  #closed = false;
  readonly #stats = { persistedIds: 0, persists: 0, failedPersists: 0, counts: 0, failedCounts: 0 };

  /** Whether a connection was ever made, and a promise of the first one. */
  #everReady = false;
  #settleFirstReady!: () => void;
  readonly #firstReady = new Promise<void>((resolve) => {
    this.#settleFirstReady = resolve;
  });

  constructor(options: RedisStoreOptions) {
    this.#options = options;
    this.#log = options.log;
    const { spec } = options;
    this.#where = spec.cluster ? `the Redis Cluster at ${spec.urls.map(withoutPassword).join(', ')}` : `Redis at ${withoutPassword(spec.urls[0]!)}`;
    const socket = {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries: number): number => Math.min(RECONNECT_FIRST_MS * 2 ** Math.min(retries, 10), RECONNECT_MAX_MS),
    };
    // Offline, commands fail at once rather than queue: a count answers 503 now, and a
    // persist's ids stay pending for the next round instead of piling up in a queue.
    if (spec.cluster) {
      const cluster = createCluster({
        rootNodes: spec.urls.map((url) => ({ url })),
        defaults: { socket, disableOfflineQueue: true },
      });
      cluster.on('error', (err: unknown) => this.#unreachable(err));
      this.#connection = cluster as unknown as Connection;
    } else {
      const client = createClient({ url: spec.urls[0]!, socket, disableOfflineQueue: true });
      client.on('error', (err: unknown) => this.#unreachable(err));
      client.on('ready', () => this.#ready());
      this.#connection = client as unknown as Connection;
    }
  }

  /**
   * Connects in the background and returns at once: a worker starts (and acknowledges
   * batches into its log) while Redis is still away; its persists wait for Redis.
   */
  start(): void {
    if (this.#options.spec.cluster) {
      this.#connectCluster();
    } else {
      (this.#connection as RedisClientType).connect().catch((err: unknown) => this.#unreachable(err));
    }
  }

  /** node-redis reconnects a node it had; finding a Cluster's nodes in the first place is retried here. */
  #connectCluster(attempt = 0): void {
    if (this.#closed || this.#connecting !== undefined) return;
    const cluster = this.#connection as RedisClusterType;
    this.#connecting = cluster.connect().then(
      () => {
        this.#connecting = undefined;
        this.#ready();
      },
      (err: unknown) => {
        this.#connecting = undefined;
        this.#unreachable(err);
        const delay = Math.min(RECONNECT_FIRST_MS * 2 ** Math.min(attempt, 10), RECONNECT_MAX_MS);
        setTimeout(() => this.#connectCluster(attempt + 1), delay).unref();
      },
    );
  }

  /** A command went through: an outage seen by a Cluster's node connections is over. */
  #succeeded(): void {
    if (this.#outage !== undefined || !this.#reachable) this.#ready();
  }

  #ready(): void {
    if (this.#closed) return;
    this.#everReady = true;
    this.#settleFirstReady();
    const wasOut = this.#outage !== undefined;
    this.#reachable = true;
    this.#outage = undefined;
    this.#log.info(wasOut ? `${this.#where} is reachable again: persisting what waited` : `connected to ${this.#where}`);
    this.#checkPersistence().catch((err: unknown) => this.#log.warn(`could not check the persistence settings of ${this.#where}: ${reason(err)}`));
  }

  #unreachable(err: unknown): void {
    if (this.#closed) return;
    this.#reachable = false;
    const text = reason(err);
    if (this.#outage !== undefined) return;
    this.#outage = text;
    this.#log.error(`${this.#where} is unreachable (${text}): counts answer 503 storage_unavailable and acknowledged ids wait in the write-ahead log; reconnecting`);
  }

  /** Says at start (and after each reconnection) whether Redis keeps what it acknowledged as long as the worker's `durability` promises. */
  async #checkPersistence(): Promise<void> {
    const persistence = await redisPersistence(this.#connection, this.#options.spec.cluster);
    this.#persistence = persistence;
    const verdict = describePersistence(persistence, this.#options.durability());
    if (verdict.level === 'ok') this.#log.info(`${this.#where}: ${verdict.message}`);
    else if (verdict.level === 'warn') this.#log.warn(`${this.#where}: ${verdict.message}`);
    else this.#log.error(`${this.#where}: ${verdict.message}`);
  }

  async persist(map: IdMap, options: PersistOptions = {}): Promise<IdMap> {
    const failed: IdMap = new Map();
    if (map.size === 0) return failed;
    this.#stats.persists++;
    if (!this.#isOpen()) {
      this.#stats.failedPersists++;
      return new Map(map);
    }
    // One command per tenant and chunk of ids; a tenant fails whole when any of its chunks does.
    const commands: { tenant: string; ids: string[] }[] = [];
    for (const [tenant, ids] of map) {
      if (ids.length === 0) continue;
      for (let from = 0; from < ids.length; from += IDS_PER_COMMAND) {
        commands.push({ tenant, ids: from === 0 && ids.length <= IDS_PER_COMMAND ? ids : ids.slice(from, from + IDS_PER_COMMAND) });
      }
    }
    const failedTenants = new Set<string>();
    let firstError: unknown;
    for (let at = 0; at < commands.length; at += COMMANDS_IN_FLIGHT) {
      const window = commands.slice(at, at + COMMANDS_IN_FLIGHT);
      const stopBy = options.stopBy;
      const late = stopBy !== undefined && Date.now() >= stopBy;
      if (late || !this.#isOpen()) {
        for (const command of window) failedTenants.add(command.tenant);
        continue;
      }
      const timeoutMs = stopBy === undefined ? PERSIST_TIMEOUT_MS : Math.max(1, Math.min(PERSIST_TIMEOUT_MS, stopBy - Date.now()));
      const failures = await withTimeout(this.#sadd(window), timeoutMs, `${window.length} SADD(s)`)
        .catch((err: unknown) => window.map(() => err));
      failures.forEach((failure, i) => {
        if (failure === undefined) return;
        failedTenants.add(window[i]!.tenant);
        firstError ??= failure;
      });
    }
    for (const tenant of failedTenants) failed.set(tenant, map.get(tenant)!);
    if (failedTenants.size < map.size) this.#succeeded();
    this.#stats.persistedIds += idCount(map) - idCount(failed);
    if (failed.size > 0) {
      this.#stats.failedPersists++;
      // An outage is said once by #unreachable; a refusal while connected (a full Redis, a wrong key type) every time.
      if (firstError !== undefined && this.#reachable) {
        this.#log.error(`${this.#where} refused the ids of ${failed.size} of ${map.size} tenant(s) (first: ${reason(firstError)}); they stay in the write-ahead log and are retried shortly`);
      }
    }
    return failed;
  }

  /**
   * Sends one window of SADDs; resolves with each command's failure (undefined: done). One
   * node: an explicit pipeline (measured: a third less client CPU per id than separate
   * commands). A Cluster routes each key to its own node, so there the commands go
   * separately, and node-redis pipelines those of one tick on each node's connection.
   */
  async #sadd(window: readonly { tenant: string; ids: string[] }[]): Promise<unknown[]> {
    if (!this.#options.spec.cluster) {
      const pipeline = (this.#connection as RedisClientType).multi();
      for (const command of window) pipeline.sAdd(tenantKey(command.tenant), command.ids);
      try {
        await pipeline.execAsPipeline();
        return window.map(() => undefined);
      } catch (err) {
        // The pipeline reports only its first refusal (a WRONGTYPE key, say): find out
        // which commands failed by sending them again one by one (SADD is idempotent).
        if (!(err instanceof ErrorReply)) return window.map(() => err);
      }
    }
    const results = await Promise.allSettled(window.map((command) => this.#connection.sAdd(tenantKey(command.tenant), command.ids)));
    return results.map((result) => (result.status === 'fulfilled' ? undefined : result.reason));
  }

  /** Redis made them durable as it answered (appendfsync always), or within a second (everysec): nothing to wait for here. */
  async checkpoint(): Promise<void> {}

  async count(tenant: string): Promise<number> {
    this.#stats.counts++;
    // Just started, not connected yet: a count waits a moment for the first connection
    // rather than answering 503 from a cluster that is merely starting.
    if (!this.#isOpen() && !this.#everReady) await Promise.race([this.#firstReady, sleep(FIRST_CONNECTION_WAIT_MS)]);
    if (!this.#isOpen()) {
      this.#stats.failedCounts++;
      throw new StoreUnavailableError(`${this.#where} is unreachable${this.#outage === undefined ? '' : ` (${this.#outage})`}`);
    }
    try {
      const count = await withTimeout(this.#connection.sCard(tenantKey(tenant)), COUNT_TIMEOUT_MS, 'a count');
      this.#succeeded();
      return count;
    } catch (err) {
      this.#stats.failedCounts++;
      throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`${this.#where} could not count (${reason(err)})`, { cause: err });
    }
  }

  #isOpen(): boolean {
    return !this.#closed && this.#connection.isReady;
  }

  /** Every worker writes to Redis directly: the membership only shows in the status. */
  setMembers(members: readonly Member[]): void {
    this.#members = members.length;
  }

  /** A persist's commands end on their own (each is bounded); nothing holds a lock to let go. */
  windDown(): void {}

  /** Nothing of Redis lives in the database folder. */
  async repair(): Promise<number> {
    return 0;
  }

  status(): StoreStatus {
    return {
      kind: this.kind,
      redis: this.#options.spec.urls.map(withoutPassword),
      cluster: this.#options.spec.cluster,
      reachable: this.#isOpen(),
      ...(this.#outage === undefined ? {} : { outage: this.#outage }),
      ...(this.#persistence === undefined ? {} : { appendonly: this.#persistence.appendonly, appendfsync: this.#persistence.appendfsync }),
      members: this.#members,
      ...this.#stats,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.#connection.isOpen) await withTimeout(this.#connection.close(), 2000, 'the goodbye');
    } catch {
      this.#connection.destroy();
    }
  }
}
