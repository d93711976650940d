import type { Logger } from '../../shared/log.js';
import { describeError } from '../../shared/describe-error.js';
import { itemsNew } from '../metrics.js';
import { HandoffClient } from './handoff.js';
import { idCount, type IdMap } from './id-map.js';
import { LocalMerges } from './local-merges.js';
import type { MergeBackend } from './merge-backend.js';
import { MergeGather } from './merge-gather.js';
import { Ownership, type Member } from './ownership.js';
import { SHARDS } from './shards.js';
import type { PersistOptions, Store, StoreStatus } from './store.js';
import { TenantFiles } from './tenant-files.js';
import { ThreadedMerges } from './threaded-merges.js';

/** Failures whose message says all there is: a broken tenant path, a stop running out of time, a lock held elsewhere. */
const EXPECTED_FAILURES = new Set(['TenantFileError', 'DeadlineError', 'LockBusyError']);

export interface FileStoreOptions {
  readonly database: string;
  readonly workerId: string;
  readonly log: Logger;
  /** The cluster secret, for hand-overs to other workers. */
  readonly secret: () => string;
  /** `lock_stale` now, ms (see setStaleMs for changes). */
  readonly lockStaleMs: number;
  /** Whether checkpoints fsync (durability: fsync); asked each time. */
  readonly sync: () => boolean;
  /** How long a hand-over to another worker may take before this worker writes the ids itself. */
  readonly handoffTimeoutMs: () => number;
  /** Write tenant files from a worker thread (a running worker) rather than this one (tests, benchmarks). @default false */
  readonly thread?: boolean;
  /** How long a merge waits to go with others (see gatherWindowMs); asked each time. @default 0 (never waits) */
  readonly gatherMs?: () => number;
}

/**
 * The store of record as per-tenant files in `database` (see tenant-file-format.ts),
 * appended under shard locks (proper-lockfile). Each shard has an owner among the live
 * workers (ownership.ts): a persist hands every tenant's ids to its owner, which merges
 * them into the file, so only the owner holds a tenant's ids in memory and no worker
 * reads back what the others wrote. When the owner cannot be reached, the worker merges
 * the ids itself — correct under the lock, only slower. Every worker answers counts from
 * the count at the end of each file.
 */
export class FileStore implements Store {
  readonly kind = 'files';
  readonly #options: FileStoreOptions;
  /** Read side only: counts. The tenant files are written by the merge backend. */
  readonly #files: TenantFiles;
  readonly #merges: MergeBackend;
  /** Every merge goes through it: ids handed over close together, and this worker's own with them, make one append per file. */
  readonly #gather: MergeGather;
  readonly #ownership: Ownership;
  readonly #handoff: HandoffClient;
  #handoffs = { sent: 0, failed: 0 };

  constructor(options: FileStoreOptions) {
    this.#options = options;
    this.#files = new TenantFiles(options.database, options.log);
    this.#ownership = new Ownership(options.workerId);
    this.#handoff = new HandoffClient(options.secret);
    const backend = { database: options.database, log: options.log, staleMs: options.lockStaleMs };
    this.#merges = options.thread === true ? new ThreadedMerges(backend) : new LocalMerges(backend);
    this.#gather = new MergeGather(this.#merges, options.gatherMs ?? (() => 0));
    this.#merges.own(this.#ownedShards());
  }

  async persist(map: IdMap, options: PersistOptions = {}): Promise<IdMap> {
    const failed: IdMap = new Map();
    // A strong read may wait for hand-overs already taken (Persister.flush, `earlier`):
    // they go now, even when it brings no ids of its own.
    if (options.visible === true) this.#gather.flush();
    if (map.size === 0) return failed;
    const local: IdMap = new Map();
    const remote = new Map<string, { member: Member; map: IdMap }>();
    for (const [tenant, ids] of map) {
      const owner = this.#ownership.ownerOf(tenant);
      if (owner === undefined) {
        local.set(tenant, ids);
        continue;
      }
      let group = remote.get(owner.url);
      if (group === undefined) {
        group = { member: owner, map: new Map() };
        remote.set(owner.url, group);
      }
      group.map.set(tenant, ids);
    }
    const work = [this.#mergeHere(local, options, failed)];
    for (const { member, map: theirs } of remote.values()) work.push(this.#handOver(member, theirs, options, failed));
    await Promise.all(work);
    return failed;
  }

  async #handOver(member: Member, map: IdMap, options: PersistOptions, failed: IdMap): Promise<void> {
    const timeout = this.#options.handoffTimeoutMs();
    const timeoutMs = options.stopBy === undefined ? timeout : Math.max(1, Math.min(timeout, options.stopBy - Date.now()));
    try {
      const answer = await this.#handoff.send(member.url, map, { visible: options.visible === true, timeoutMs });
      this.#handoffs.sent++;
      for (const tenant of answer.failed) {
        const ids = map.get(tenant);
        if (ids !== undefined) failed.set(tenant, ids);
      }
    } catch (err) {
      this.#handoffs.failed++;
      this.#options.log.warn(`handing ${idCount(map)} id(s) of ${map.size} tenant(s) to ${member.id} failed (${describeError(err)}): writing them here instead`);
      await this.#mergeHere(map, options, failed);
    }
  }

  async #mergeHere(map: IdMap, options: PersistOptions, failed: IdMap): Promise<void> {
    if (map.size === 0) return;
    if (options.stopBy !== undefined && Date.now() >= options.stopBy) {
      // A stopping worker's time is up: its log keeps these. Not even a trip to the merge
      // thread, which for tens of thousands of tenants costs a few hundred ms of encoding.
      for (const [tenant, ids] of map) failed.set(tenant, ids);
      this.#options.log.warn(`the worker is stopping and its time to persist is up: ${map.size} tenant(s) stay in the write-ahead log`);
      return;
    }
    // Only ids other workers handed over wait for company; this worker's own go at once, with any that wait.
    const urgent = options.visible === true || options.handedOver !== true;
    const outcome = await this.#gather.merge(map, { ...(options.stopBy === undefined ? {} : { stopBy: options.stopBy }), urgent });
    itemsNew.inc(outcome.written);
    for (const [tenant, failure] of outcome.failed) failed.set(tenant, failure.ids);
    if (outcome.failed.size > 0) {
      const [tenant, first] = outcome.failed.entries().next().value!;
      const file = (first.error as { file?: string }).file ?? this.#files.pathOf(tenant);
      // Expected troubles are said in words; anything else keeps its stack for the log.
      const detail = EXPECTED_FAILURES.has((first.error as Error).name) ? undefined : first.error;
      this.#options.log.error(`could not persist ${outcome.failed.size} of ${map.size} tenant(s) (first: ${file}: ${describeError(first.error)}); their ids stay in the write-ahead log and are retried shortly`, detail);
    }
  }

  async checkpoint(): Promise<void> {
    await this.#merges.checkpoint(this.#options.sync());
  }

  async count(tenant: string): Promise<number> {
    return this.#files.count(tenant);
  }

  setMembers(members: readonly Member[]): void {
    this.#ownership.setMembers(members);
    this.#merges.own(this.#ownedShards());
    const urls = new Set(members.map((member) => member.url));
    this.#handoff.close((url) => urls.has(url)).catch(() => {});
  }

  windDown(at: number): void {
    this.#gather.flush();
    this.#merges.setDeadline(at);
  }

  /** A new `lock_stale`: every process must use the same, so it applies at once. */
  setStaleMs(ms: number): void {
    this.#merges.setStaleMs(ms);
  }

  /** Shards whose locks this worker keeps; null while it knows no membership (then it writes everything, lock by lock). */
  #ownedShards(): number[] | null {
    if (this.#ownership.members.length === 0) return null;
    const shards: number[] = [];
    for (let shard = 0; shard < SHARDS; shard++) if (this.#ownership.ownsShard(shard)) shards.push(shard);
    return shards;
  }

  repair(): Promise<number> {
    return this.#merges.repair();
  }

  status(): StoreStatus {
    const held = this.#merges.held();
    return {
      kind: this.kind,
      heldTenants: held.tenants,
      heldIds: held.ids,
      members: this.#ownership.members.length,
      handoffsSent: this.#handoffs.sent,
      handoffsFailed: this.#handoffs.failed,
    };
  }

  async close(): Promise<void> {
    this.#gather.flush();
    await this.#merges.close();
    await this.#handoff.close();
  }
}
