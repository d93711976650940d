import http from 'node:http';
import type { Config } from '../shared/config.js';
import { closeAfter, whenNextOnConnection } from '../shared/connection-guard.js';
import { consistencyOf } from '../shared/consistency.js';
import { AppError, errorBody } from '../shared/errors.js';
import { createFrontDoor, describeRequest } from '../shared/http-server.js';
import { checkTenant, parseBatch } from '../shared/items.js';
import { newErrorId, type Logger } from '../shared/log.js';
import { OBSERVING_ROUTES } from '../shared/ops-handlers.js';
import { checkBatchContentType, readBody } from '../shared/request-body.js';
import { sendError, sendJson } from '../shared/responses.js';
import { RouteTable, type RouteMatch } from '../shared/routes.js';
import { closeServer as closeGracefully, createHttpServer, listen } from '../shared/server-lifecycle.js';
import { tenantOf, tenantsFromQuery } from '../shared/tenant-param.js';
import type { Coalescer } from './coalescer.js';
import type { ConfigProblem } from './config-watcher.js';
import { INSTANCE_ID, forwardedBy } from './forwarded-by.js';
import type { ForwardResponse } from './forwarder.js';
import type { WorkerStatus } from './managed-worker.js';
import { CoordinatorOps } from './ops/coordinator-ops.js';
import { itemsAccepted } from './ops/metrics.js';
import type { CountAnswer, ReadPath } from './read-path.js';

export interface CoordinatorServerOptions {
  /** Limits (`max_body_bytes`, `max_batch_items`, id and tenant lengths) are read from it. */
  readonly config: Config;
  readonly log: Logger;
  /** Count queries go through it: a worker's answer, raised to the tenant's floor; strong reads flush first. */
  readonly reads: Pick<ReadPath, 'count' | 'counts'>;
  /** Batches go through it (merged with concurrent ones when `coalesce` is on). */
  readonly coalescer: Pick<Coalescer, 'submit'>;
  /** The workers' state for `GET /`, `/status`, `/readyz` and `/metrics` (the supervisor's rows). */
  readonly status: () => readonly WorkerStatus[];
  /** The config file, for `GET /status`. @default '' */
  readonly configFile?: string;
  /** Why the config file on disk is not in force, for `GET /status`. @default never */
  readonly configProblem?: () => ConfigProblem | undefined;
  /** This coordinator's id in forwarded requests (see forwarded-by.ts). @default INSTANCE_ID */
  readonly instanceId?: string;
}

export interface CoordinatorServer {
  readonly server: http.Server;
  /** New limits apply to the next request. */
  setConfig(config: Config): void;
  /** From now on every new request gets 503 `shutting_down` with `Connection: close`. */
  beginShutdown(): void;
  listen(port: number, host: string): Promise<void>;
  /** Stops listening, lets requests in flight finish (at most 10 s), closes every connection. Same promise on a second call. */
  close(): Promise<void>;
}

/** How long close() waits for requests in flight before cutting their connections. */
const CLOSE_GRACE_MS = 10_000;

/**
 * Bodies of at least this many bytes are forwarded as they came, unparsed: the worker
 * validates every batch anyway and answers the same 400 (code, index, reason), which is
 * passed through. Parsing them here too cost ~4 µs of coordinator CPU per item on
 * 100-item batches (~3.5 KB). Smaller bodies are parsed: a bad one is answered without a
 * worker hop, and a good one's item count lets it be merged with others (coalescing,
 * which is where small batches gain).
 */
export const VALIDATE_BELOW_BYTES = 2048;

const JSON_TYPE = 'application/json; charset=utf-8';

const ACCEPTED_PREFIX = '{"accepted":';

/** N of a worker's `{"accepted":N}`; 0 for anything else. */
function acceptedOf(body: Buffer): number {
  const text = body.length < 64 ? body.toString('latin1') : '';
  return text.startsWith(ACCEPTED_PREFIX) ? Number.parseInt(text.slice(ACCEPTED_PREFIX.length), 10) || 0 : 0;
}

/** Passes a worker's answer through: its status and body as they are. */
function reply(res: http.ServerResponse, answer: ForwardResponse, closing: boolean): void {
  if (closing) closeAfter(res);
  res.writeHead(answer.status, ['content-type', JSON_TYPE, 'content-length', String(answer.body.length)]);
  res.end(answer.body);
}

/** The error a worker answered, for the coordinator's own log line (same id). */
function workerError(body: Buffer): { code: string; message: string; id: string } | undefined {
  try {
    const error = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown; id?: unknown } }).error;
    if (typeof error?.code === 'string' && typeof error.id === 'string') return { code: error.code, message: String(error.message ?? ''), id: error.id };
  } catch {
    // Not our JSON error shape: nothing to log by id.
  }
  return undefined;
}

/**
 * The coordinator's HTTP API: validate (small bodies; see VALIDATE_BELOW_BYTES), then
 * hand batches to the coalescer and counts to the read path. Routes come from the shared
 * table (shared/routes.ts).
 */
export function createCoordinatorServer(options: CoordinatorServerOptions): CoordinatorServer {
  const { log, reads, coalescer, status } = options;
  const instanceId = options.instanceId ?? INSTANCE_ID;
  let config = options.config;
  let shuttingDown = false;
  let closing: Promise<void> | undefined;

  /** The 503 every request gets once shutdown began; one log line (and id) serves them all. */
  let shutdownAnswer = '';

  function refuseShuttingDown(res: http.ServerResponse): void {
    closeAfter(res);
    res.writeHead(503, ['content-type', JSON_TYPE, 'content-length', String(Buffer.byteLength(shutdownAnswer)), 'connection', 'close']);
    res.end(shutdownAnswer);
  }

  function beginShutdown(): void {
    if (shuttingDown) return;
    shuttingDown = true;
    // Logging each refusal would write a line per request while clients retry; the id still finds this line.
    const id = newErrorId();
    log.info(`shutting down: new requests are answered 503 shutting_down [${id}]`);
    shutdownAnswer = JSON.stringify(errorBody(new AppError('shutting_down'), id));
  }

  async function ingest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkBatchContentType(req);
      const limits = config;
      const body = await readBody(req, limits.max_body_bytes);
      if (body.length >= VALIDATE_BELOW_BYTES) {
        const answer = await coalescer.submit(body, undefined);
        if (answer.status === 200) itemsAccepted.value += acceptedOf(answer.body);
        else if (answer.status >= 400) {
          const error = workerError(answer.body);
          if (error !== undefined) log.warn(`POST /items (${body.length} bytes, validated by ${answer.worker}): ${error.code}: ${error.message}`, undefined, error.id);
        }
        reply(res, answer, shuttingDown);
        return;
      }
      const items = parseBatch(body, limits);
      const answer = await coalescer.submit(body, items.length);
      if (answer.status === 200) itemsAccepted.value += items.length;
      reply(res, answer, shuttingDown);
    } catch (err) {
      sendError(res, err, log, 'POST /items');
    }
  }

  /** Sends a count when it is this answer's turn on its connection, so it is never lower than one answered before it there. */
  function replyCount(res: http.ServerResponse, answer: CountAnswer): void {
    whenNextOnConnection(res, () => reply(res, answer.settle(), shuttingDown), () => answer.abandon());
  }

  async function count(res: http.ServerResponse, match: RouteMatch): Promise<void> {
    try {
      const tenant = checkTenant(tenantOf(match), config.max_tenant_length);
      replyCount(res, await reads.count(tenant, consistencyOf(match.query)));
    } catch (err) {
      sendError(res, err, log, 'GET count');
    }
  }

  async function counts(res: http.ServerResponse, match: RouteMatch): Promise<void> {
    try {
      const limits = config;
      const tenants = tenantsFromQuery(match.query, limits.max_count_tenants, (tenant) => checkTenant(tenant, limits.max_tenant_length));
      replyCount(res, await reads.counts(tenants, match.query, consistencyOf(match.query)));
    } catch (err) {
      sendError(res, err, log, 'GET /counts');
    }
  }

  function refuseForwarded(req: http.IncomingMessage, res: http.ServerResponse, from: string): void {
    const self = from.split(',').map((part) => part.trim()).includes(instanceId);
    const message = self
      ? 'This coordinator received a request it forwarded itself: a `workers` entry of its config is its own address.'
      : 'A coordinator forwarded this request here as if this coordinator were a worker: a `workers` entry of its config points at this coordinator.';
    sendError(res, new AppError('forwarding_loop', message), log, `${describeRequest(req)} from coordinator ${from.slice(0, 40)}`);
  }

  const table = new RouteTable('coordinator');
  const ops = new CoordinatorOps({
    table,
    log,
    config: () => config,
    workers: status,
    stopping: () => shuttingDown,
    ...(options.configFile === undefined ? {} : { configFile: options.configFile }),
    ...(options.configProblem === undefined ? {} : { configProblem: options.configProblem }),
  });
  ops.start();
  const onRequest = createFrontDoor({
    table,
    log,
    metrics: ops.requests,
    handlers: {
      ...ops.handlers(),
      health: (_req, res) => sendJson(res, 200, { status: 'ok', workers: status() }),
      ingest: (req, res) => ingest(req, res),
      countByQuery: (_req, res, match) => count(res, match),
      countBySegment: (_req, res, match) => count(res, match),
      counts: (_req, res, match) => counts(res, match),
    },
    intercept: (req, res, match) => {
      if (shuttingDown && !(match?.kind === 'route' && OBSERVING_ROUTES.has(match.name))) {
        refuseShuttingDown(res);
        return true;
      }
      const from = forwardedBy(req);
      if (from === undefined) return false;
      refuseForwarded(req, res, from);
      return true;
    },
  });

  const server = createHttpServer(onRequest, log);

  async function closeServer(): Promise<void> {
    beginShutdown();
    await closeGracefully(server, CLOSE_GRACE_MS, log);
    await ops.close();
  }

  return {
    server,
    setConfig(next: Config): void {
      config = next;
    },
    beginShutdown,
    listen: (port: number, host: string) => listen(server, port, host),
    close(): Promise<void> {
      closing ??= closeServer();
      return closing;
    },
  };
}
