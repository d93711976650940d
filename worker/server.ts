import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import type { Config } from '../shared/config.js';
import { AppError } from '../shared/errors.js';
import { SECRET_HEADER, checkJsonContentType, readBody, sendError, sendJson } from '../shared/http.js';
import { addItemRoutes, closeServer, createApp, createHttpServer, listen, matchHotRoute, tenantOf, type HotRoute } from '../shared/http-server.js';
import { checkTenant, parseBatch } from '../shared/items.js';
import type { Logger } from '../shared/log.js';
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
function checkSecret(req: Request, secret: string): void {
  const given = req.headers[SECRET_HEADER];
  if (typeof given !== 'string' || given === '') throw new AppError('unauthorized');
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw new AppError('forbidden');
}

/**
 * The worker's HTTP API: validate → store in memory → log durably → acknowledge.
 * Counts are answered from memory after a cheap catch-up on the tenant file; `/kill` is
 * the coordinator's graceful stop. The hot routes skip express, as on the coordinator.
 */
export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { store, wal, log, config } = options;
  let shuttingDown = false;

  async function ingest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      checkJsonContentType(req);
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

  async function count(res: http.ServerResponse, route: Exclude<HotRoute, { kind: 'ingest' }>): Promise<void> {
    try {
      const tenant = checkTenant(tenantOf(route), config().max_tenant_length);
      sendJson(res, 200, { count: await store.count(tenant) });
    } catch (err) {
      sendError(res, err, log, 'GET count');
    }
  }

  async function kill(req: Request, res: Response): Promise<void> {
    try {
      checkSecret(req, options.secret);
      const { persisted } = await options.onKill();
      res.once('close', options.onKilled);
      sendJson(res, 200, { status: 'stopping', persisted }, { connection: 'close' });
    } catch (err) {
      sendError(res, err, log, `${req.method} /kill`);
    }
  }

  const app = createApp(log, (routes, notAllowed) => {
    routes.use((req: Request, res: Response, next: NextFunction) => {
      if (shuttingDown && req.path !== '/kill') sendError(res, new AppError('shutting_down'), log, `${req.method} ${req.path}`);
      else next();
    });
    routes.route('/')
      .get((_req: Request, res: Response) => {
        sendJson(res, 200, { status: 'ok', worker: options.workerId, tenants: store.tenantCount(), pending: store.pendingIds(), durability: config().durability });
      })
      .all(notAllowed('GET, HEAD'));
    addItemRoutes(routes, notAllowed, { ingest, count });
    routes.route('/kill')
      .get(kill)
      .post(kill)
      .all(notAllowed('GET, HEAD, POST'));
  });

  const unexpected = (err: unknown): void => {
    log.error('request handler failed', err);
  };
  const server = createHttpServer((req, res) => {
    const route = shuttingDown ? undefined : matchHotRoute(req.method, req.url!);
    if (route === undefined) app(req, res);
    else if (route.kind === 'ingest') ingest(req, res).catch(unexpected);
    else count(res, route).catch(unexpected);
  }, log);

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
