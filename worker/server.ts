import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Config } from '../shared/config.js';
import { SECRET_HEADER } from '../shared/control-secret.js';
import { AppError } from '../shared/errors.js';
import { createFrontDoor, describeRequest } from '../shared/http-server.js';
import { checkTenant, parseBatch } from '../shared/items.js';
import type { Logger } from '../shared/log.js';
import { checkBatchContentType, readBody } from '../shared/request-body.js';
import { sendError, sendJson } from '../shared/responses.js';
import { RouteTable, type RouteMatch } from '../shared/routes.js';
import { closeServer, createHttpServer, listen } from '../shared/server-lifecycle.js';
import { tenantOf } from '../shared/tenant-param.js';
import { describeDiskError } from './disk-error.js';
import type { TenantStore } from './tenant-store.js';
import type { Wal } from './wal.js';

export interface WorkerServerOptions {
  readonly workerId: string;
  readonly config: () => Config;
  readonly store: TenantStore;
  readonly wal: Wal;
  readonly log: Logger;
  readonly secret: string;
  /** Persist everything and prepare to exit; the answer to /kill waits for it. */
  readonly onKill: () => Promise<{ persisted: number }>;
  /** The /kill answer went out: now exit. */
  readonly onKilled: () => void;
}

export interface WorkerServer {
  readonly server: http.Server;
  listen(port: number, host: string): Promise<void>;
  /** From now on answer 503 + Connection: close. */
  beginShutdown(): void;
  /** Stop listening and wait (bounded) for requests under way. */
  close(): Promise<void>;
}

/** Requests under way get this long after shutdown began (they wait on the write-ahead log). */
const CLOSE_GRACE_MS = 5_000;

/** Control calls need the secret the coordinator handed over IPC: 401 without it, 403 when wrong. */
function checkSecret(req: http.IncomingMessage, secret: string): void {
  const given = req.headers[SECRET_HEADER];
  if (typeof given !== 'string' || given === '') throw new AppError('unauthorized');
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new AppError('forbidden');
}

/**
 * The worker's HTTP API: validate → store in memory → log durably → acknowledge.
 * Counts are answered from memory after a cheap catch-up on the tenant file; `/kill` is
 * the coordinator's graceful stop. Routes come from the shared table (shared/routes.ts).
 */
export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { store, wal, log, config } = options;
  let shuttingDown = false;

  async function ingest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkBatchContentType(req);
      const current = config();
      const items = parseBatch(await readBody(req, current.max_body_bytes), current);
      const fresh = store.unseen(items);
      try {
        // Counted only once durable: a batch the log refuses leaves no trace.
        await wal.append(fresh, () => store.addPairs(fresh));
      } catch (err) {
        throw new AppError('storage_unavailable', `The worker could not write the batch to its log (${describeDiskError(err)}); nothing was stored. Try again shortly.`, { cause: err });
      }
      sendJson(res, 200, { accepted: items.length });
    } catch (err) {
      sendError(res, err, log, 'POST /items');
    }
  }

  async function count(res: http.ServerResponse, route: RouteMatch): Promise<void> {
    try {
      const tenant = checkTenant(tenantOf(route), config().max_tenant_length);
      sendJson(res, 200, { count: await store.count(tenant) });
    } catch (err) {
      sendError(res, err, log, 'GET count');
    }
  }

  async function kill(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkSecret(req, options.secret);
      const { persisted } = await options.onKill();
      res.once('close', options.onKilled);
      sendJson(res, 200, { status: 'stopping', persisted }, { connection: 'close' });
    } catch (err) {
      sendError(res, err, log, `${req.method} /kill`);
    }
  }

  const onRequest = createFrontDoor({
    table: new RouteTable('worker'),
    log,
    handlers: {
      health: (_req, res) => {
        sendJson(res, 200, { status: 'ok', worker: options.workerId, tenants: store.tenantCount(), pending: store.pendingIds(), durability: config().durability });
      },
      ingest: (req, res) => ingest(req, res),
      countByQuery: (_req, res, match) => count(res, match),
      countBySegment: (_req, res, match) => count(res, match),
      kill: (req, res) => kill(req, res),
    },
    intercept: (req, res, match) => {
      if (!shuttingDown || (match?.kind === 'route' && match.name === 'kill')) return false;
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
    close: () => {
      shuttingDown = true;
      closing ??= closeServer(server, CLOSE_GRACE_MS, log);
      return closing;
    },
  };
}
