import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { PARTS_HEADER, splitParts } from '../shared/batch-parts.js';
import type { Config } from '../shared/config.js';
import { consistencyOf } from '../shared/consistency.js';
import { SECRET_HEADER } from '../shared/control-secret.js';
import { AppError, endSentence } from '../shared/errors.js';
import { createFrontDoor, describeRequest } from '../shared/http-server.js';
import { parseMembers, type MemberInfo } from '../shared/ipc.js';
import { bodyText, checkTenant, parseBatch, parseJsonBody } from '../shared/items.js';
import type { Logger } from '../shared/log.js';
import { processMetrics } from '../shared/metrics.js';
import { OBSERVING_ROUTES, commonOpsHandlers } from '../shared/ops-handlers.js';
import { Readiness } from '../shared/readiness.js';
import { RequestMetrics } from '../shared/request-metrics.js';
import { checkBatchContentType, readBody } from '../shared/request-body.js';
import { errorAnswer, sendError, sendJson } from '../shared/responses.js';
import { RouteTable, type RouteMatch } from '../shared/routes.js';
import { closeServer, createHttpServer, listen } from '../shared/server-lifecycle.js';
import { tenantOf, tenantsFromQuery } from '../shared/tenant-param.js';
import { describeError } from '../shared/describe-error.js';
import { itemsAccepted } from './metrics.js';
import type { Pending } from './pending.js';
import type { Persister } from './persister.js';
import { COMPACT_ID_MAP_TYPE, decodeIdMap, decodeIdMapCompact, encodeIdMap, type IdMap } from './store/id-map.js';
import type { Store } from './store/store.js';
import { WalLostError, asRecord, type Wal } from './wal.js';

export interface WorkerServerOptions {
  readonly workerId: string;
  readonly config: () => Config;
  readonly pending: Pending;
  readonly store: Store;
  readonly wal: Wal;
  readonly persister: Persister;
  readonly log: Logger;
  readonly secret: string;
  /** What `GET /` adds about the worker's state. */
  readonly status: () => Record<string, unknown>;
  /** Persist (within kill_timeout) and prepare to exit; the answer to /kill waits for it. */
  readonly onKill: () => Promise<{ persisted: boolean; pending: number }>;
  /** The /kill answer went out: now exit. */
  readonly onKilled: () => void;
  /** The coordinator sent the live membership (to a worker it did not spawn: spawned ones get it over IPC). */
  readonly onMembers: (members: readonly MemberInfo[]) => void;
}

export interface WorkerServer {
  readonly server: http.Server;
  listen(port: number, host: string): Promise<void>;
  /** From now on answer client requests 503 + Connection: close (hand-overs from other workers are still taken). */
  beginShutdown(): void;
  /**
   * From now on answer hand-overs 503 `shutting_down` too (their senders merge the ids
   * themselves); resolves once those already taken are in the log and pending.
   */
  closeHandoffs(): Promise<void>;
  /** Stop listening and wait (at most `graceMs`) for requests under way. */
  close(graceMs?: number): Promise<void>;
}

/** Requests under way get this long after shutdown began (they wait on the write-ahead log). */
const CLOSE_GRACE_MS = 5_000;
/** Largest hand-over from another worker (they send at most 1 MiB; this leaves room). */
const MAX_HANDOFF_BYTES = 64 * 1024 * 1024;
/** Most tenants one flush request may name. */
const MAX_FLUSH_TENANTS = 10_000;

/**
 * A worker answers what its store holds (`consistency=eventual`, the default). A strong
 * read needs every worker of the cluster to persist first, which only the coordinator can
 * ask of them all: a worker alone would answer a count that may miss other workers' ids.
 */
function eventualOnly(query: string): void {
  if (consistencyOf(query) === 'strong') {
    throw new AppError('invalid_consistency', 'A worker answers only `consistency=eventual`: a strong read goes through the coordinator, which has every worker persist the tenant first.');
  }
}

/** Control calls need the secret the coordinator handed over IPC: 401 without it, 403 when wrong. */
function checkSecret(req: http.IncomingMessage, secret: string): void {
  const given = req.headers[SECRET_HEADER];
  if (typeof given !== 'string' || given === '') throw new AppError('unauthorized');
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new AppError('forbidden');
}

/**
 * The worker's HTTP API, routed by the shared table (shared/routes.ts). A batch: validate
 * → append its JSON as sent to the write-ahead log (group commit) → its ids become pending
 * → 200. A count: the store's (every worker answers the same once ids are persisted).
 * Control routes, for the coordinator and the other workers only: `/kill` (persist, answer,
 * exit), the hand-over of ids to the worker that writes their tenants' files, and a flush
 * (what a strong read asks of every worker).
 */
export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { wal, pending, store, persister, log, config } = options;
  let shuttingDown = false;
  let handoffsClosed = false;
  /** Hand-overs taken and not yet logged, and who waits for them to be. */
  let handoffsUnderWay = 0;
  const handoffsLogged: (() => void)[] = [];

  function storageError(err: unknown): AppError {
    if (err instanceof WalLostError) persister.recoverSoon().catch(() => {});
    return new AppError('storage_unavailable', `The worker could not write the batch to its log (${describeError(err)}); nothing was stored. Try again shortly.`, { cause: err });
  }

  /** One batch: validated, logged, its ids pending; resolves with its number of items. */
  async function acceptBatch(body: Buffer, current: Config): Promise<number> {
    const items = parseBatch(body, current);
    if (items.length > 0) {
      try {
        // Pending only once durable: a batch the log refuses leaves no trace.
        await wal.append(asRecord(body), () => pending.addItems(items));
      } catch (err) {
        throw storageError(err);
      }
    }
    itemsAccepted.value += items.length;
    return items.length;
  }

  async function ingest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkBatchContentType(req);
      const current = config();
      const body = await readBody(req, current.max_body_bytes);
      sendJson(res, 200, { accepted: await acceptBatch(body, current) });
    } catch (err) {
      sendError(res, err, log, 'POST /items');
    }
  }

  /**
   * Clients' batches the coordinator sent together (shared/batch-parts.ts): each is
   * validated and answered as if it had come alone, and all of them started in one turn
   * of the event loop, so they share one durable write of the log (group commit).
   */
  async function ingestBatches(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkSecret(req, options.secret);
      const current = config();
      // The coordinator sends together no more than `max_body_bytes`, the limit of one batch.
      const body = await readBody(req, current.max_body_bytes);
      const parts = splitParts(req.headers[PARTS_HEADER], body);
      const answers = await Promise.all(parts.map(async (part): Promise<readonly [number, unknown]> => {
        try {
          return [200, { accepted: await acceptBatch(part, current) }];
        } catch (err) {
          const { error, body: answer } = errorAnswer(err, log, `POST /items (${part.length} bytes, sent with ${parts.length - 1} other batch(es))`);
          return [error.status, answer];
        }
      }));
      sendJson(res, 200, { answers });
    } catch (err) {
      sendError(res, err, log, 'POST /internal/batches');
    }
  }

  /** The store's count of a tenant; a store that cannot answer is a 503. */
  async function countOf(tenant: string): Promise<number> {
    try {
      return await store.count(tenant);
    } catch (err) {
      throw new AppError('storage_unavailable', `The count of tenant ${JSON.stringify(tenant.slice(0, 80))} cannot be read (${describeError(err)}).`, { cause: err });
    }
  }

  async function count(res: http.ServerResponse, route: RouteMatch): Promise<void> {
    try {
      const tenant = checkTenant(tenantOf(route), config().max_tenant_length);
      eventualOnly(route.query);
      sendJson(res, 200, { count: await countOf(tenant) });
    } catch (err) {
      sendError(res, err, log, 'GET count');
    }
  }

  /** `GET /counts?tenant=a&tenant=b`: `{"counts": {"a": 1, "b": 2}}`. */
  async function counts(res: http.ServerResponse, route: RouteMatch): Promise<void> {
    try {
      const current = config();
      const tenants = tenantsFromQuery(route.query, current.max_count_tenants, (tenant) => checkTenant(tenant, current.max_tenant_length));
      eventualOnly(route.query);
      // No prototype: a tenant named `__proto__` is a key like any other.
      const answer: Record<string, number> = Object.create(null) as Record<string, number>;
      for (const tenant of tenants) answer[tenant] = await countOf(tenant);
      sendJson(res, 200, { counts: answer });
    } catch (err) {
      sendError(res, err, log, 'GET /counts');
    }
  }

  /** Ids from another worker, for tenants this one writes: log them, answer, merge them at once. */
  async function handoff(req: http.IncomingMessage, res: http.ServerResponse, route: RouteMatch): Promise<void> {
    if (handoffsClosed) {
      sendError(res, new AppError('shutting_down'), log, 'POST /internal/merge');
      return;
    }
    handoffsUnderWay++;
    try {
      await takeHandoff(req, res, route);
    } finally {
      if (--handoffsUnderWay === 0) for (const resolve of handoffsLogged.splice(0)) resolve();
    }
  }

  /**
   * A hand-over's ids, and the write-ahead log record that holds them (always JSON: the
   * log stays readable by every version). Workers send the compact form of id-map.ts;
   * a JSON object (what earlier versions send) is taken too.
   */
  function readHandoff(body: Buffer, type: string | undefined): { map: IdMap; record: Buffer } {
    try {
      if (type !== COMPACT_ID_MAP_TYPE) {
        const map = decodeIdMap(parseJsonBody(body));
        return { map, record: asRecord(body) };
      }
      const map = decodeIdMapCompact(bodyText(body));
      // Without a size limit the map is one JSON object (none when it is empty).
      return { map, record: Buffer.from(encodeIdMap(map)[0] ?? '{}', 'utf8') };
    } catch (err) {
      throw err instanceof AppError ? err : new AppError('invalid_batch', endSentence(`A hand-over must be tenants with their ids: ${(err as Error).message}`));
    }
  }

  async function takeHandoff(req: http.IncomingMessage, res: http.ServerResponse, route: RouteMatch): Promise<void> {
    try {
      checkSecret(req, options.secret);
      const body = await readBody(req, MAX_HANDOFF_BYTES);
      const { map, record } = readHandoff(body, req.headers['content-type']);
      try {
        await wal.append(record, () => pending.addMap(map));
      } catch (err) {
        throw storageError(err);
      }
      const visible = new URLSearchParams(route.query).get('wait') === 'visible';
      const merged = persister.flushSoon(map.keys(), { visible });
      // Durable here now: the sender may forget them. A strong read waits for the merge too.
      const failed = visible ? [...(await merged)] : [];
      if (!visible) merged.catch(() => {});
      sendJson(res, 200, { failed });
    } catch (err) {
      sendError(res, err, log, 'POST /internal/merge');
    }
  }

  /** A strong read: persist these tenants' pending ids and wait until every worker counts them. */
  async function flush(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkSecret(req, options.secret);
      // Not max_body_bytes: a client's limit; this body names up to max_count_tenants tenants.
      const value = parseJsonBody(await readBody(req, MAX_HANDOFF_BYTES)) as { tenants?: unknown } | null;
      const tenants = value?.tenants;
      if (!Array.isArray(tenants) || tenants.length > MAX_FLUSH_TENANTS || !tenants.every((t) => typeof t === 'string')) {
        throw new AppError('invalid_batch', `A flush names its tenants: {"tenants": [...]}, at most ${MAX_FLUSH_TENANTS}.`);
      }
      const wanted = new Set(tenants as string[]);
      // Taken just before the flush, which waits for the same persists: see Persister.handingOver.
      const handingOver = persister.handingOver(wanted);
      const handedOverMsAgo = persister.handedOverMsAgo(wanted) ?? null;
      const failed = await persister.flush(wanted, { visible: true, earlier: true });
      if (failed.size > 0) {
        throw new AppError('storage_unavailable', `${failed.size} tenant(s) could not be persisted now (see the worker's log); their ids are safe in its write-ahead log.`);
      }
      sendJson(res, 200, { flushed: tenants.length, handingOver, handedOverMsAgo });
    } catch (err) {
      sendError(res, err, log, 'POST /internal/flush');
    }
  }

  /** The live membership from the coordinator: which worker writes which tenants' files. */
  async function members(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkSecret(req, options.secret);
      const list = parseMembers(parseJsonBody(await readBody(req, MAX_HANDOFF_BYTES)));
      if (list === undefined) throw new AppError('invalid_batch', 'A membership is {"members": [{"id": ..., "url": "http://..."}, ...]}.');
      options.onMembers(list);
      sendJson(res, 200, { members: list.length });
    } catch (err) {
      sendError(res, err, log, 'POST /internal/members');
    }
  }

  async function kill(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkSecret(req, options.secret);
      const result = await options.onKill();
      res.once('close', options.onKilled);
      sendJson(res, 200, { status: 'stopping', ...result }, { connection: 'close' });
    } catch (err) {
      sendError(res, err, log, `${req.method} /kill`);
    }
  }

  const table = new RouteTable('worker');
  const readiness = new Readiness(log, () => {
    if (shuttingDown) return 'the worker is stopping';
    if (wal.lost) return 'its write-ahead log was deleted or moved; batches are refused until it is recreated';
    return undefined;
  });
  const onRequest = createFrontDoor({
    table,
    log,
    metrics: new RequestMetrics(table),
    handlers: {
      ...commonOpsHandlers({ role: 'worker', readiness, metrics: processMetrics, log }),
      health: (_req, res) => {
        sendJson(res, 200, { status: 'ok', worker: options.workerId, durability: config().durability, ...options.status() });
      },
      ingest: (req, res) => ingest(req, res),
      batches: (req, res) => ingestBatches(req, res),
      countByQuery: (_req, res, match) => count(res, match),
      countBySegment: (_req, res, match) => count(res, match),
      counts: (_req, res, match) => counts(res, match),
      kill: (req, res) => kill(req, res),
      handoff: (req, res, match) => handoff(req, res, match),
      flush: (req, res) => flush(req, res),
      members: (req, res) => members(req, res),
    },
    intercept: (req, res, match) => {
      // While stopping, other workers may still hand over ids: this worker takes them until it exits.
      if (!shuttingDown || (match?.kind === 'route' && (match.name === 'kill' || match.name === 'handoff' || match.name === 'members' || OBSERVING_ROUTES.has(match.name)))) return false;
      sendError(res, new AppError('shutting_down'), log, describeRequest(req));
      return true;
    },
  });
  const server = createHttpServer(onRequest, log);

  let closing: Promise<void> | undefined;
  return {
    server,
    listen: (port, host) => listen(server, port, host),
    beginShutdown: () => { shuttingDown = true; },
    closeHandoffs: () => {
      handoffsClosed = true;
      return handoffsUnderWay === 0 ? Promise.resolve() : new Promise<void>((resolve) => handoffsLogged.push(resolve));
    },
    close: (graceMs = CLOSE_GRACE_MS) => {
      shuttingDown = true;
      closing ??= closeServer(server, graceMs, log);
      return closing;
    },
  };
}
