import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../shared/config.js';
import { AppError } from '../shared/errors.js';
import { SECRET_HEADER, checkJsonContentType, readBody, sendError, sendJson } from '../shared/http.js';
import { checkTenant, parseBatch } from '../shared/items.js';
import type { Logger } from '../shared/log.js';
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
 * `GET /items/...` answers counts; `/kill` is the coordinator's graceful stop.
 */
export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { store, wal, log, config } = options;
  let shuttingDown = false;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((req: Request, res: Response, next: NextFunction) => {
    if (shuttingDown && req.path !== '/kill') sendError(res, new AppError('shutting_down'), log, `${req.method} ${req.path}`);
    else next();
  });

  app.get('/', (_req, res) => {
    sendJson(res, 200, { status: 'ok', worker: options.workerId, tenants: store.tenantCount(), pending: store.pendingIds(), durability: config().durability, degraded: wal.degraded });
  });

  app.post('/items', async (req, res) => {
    try {
      checkJsonContentType(req);
      const current = config();
      const items = parseBatch(await readBody(req, current.max_body_bytes), current);
      const { fresh } = store.add(items);
      try {
        await wal.append(fresh);
      } catch (err) {
        throw new AppError('storage_unavailable', undefined, { cause: err });
      }
      sendJson(res, 200, { accepted: items.length });
    } catch (err) {
      sendError(res, err, log, 'POST /items');
    }
  });

  const count = async (tenant: unknown, res: Response): Promise<void> => {
    try {
      const name = checkTenant(tenant, config().max_tenant_length);
      sendJson(res, 200, { count: await store.count(name) });
    } catch (err) {
      sendError(res, err, log, 'GET count');
    }
  };
  app.get('/items/count', (req, res) => count(req.query.tenant, res));
  app.get('/items/:tenant/count', (req, res) => count(req.params.tenant, res));

  const kill = async (req: Request, res: Response): Promise<void> => {
    try {
      checkSecret(req, options.secret);
      const { persisted } = await options.onKill();
      res.once('close', options.onKilled);
      sendJson(res, 200, { status: 'stopping', persisted }, { connection: 'close' });
    } catch (err) {
      sendError(res, err, log, `${req.method} /kill`);
    }
  };
  app.get('/kill', kill);
  app.post('/kill', kill);

  const routes: Record<string, string> = { '/': 'GET, HEAD', '/items': 'POST', '/items/count': 'GET, HEAD', '/kill': 'GET, HEAD, POST' };
  app.use((req: Request, res: Response) => {
    const allow = routes[req.path] ?? (/^\/items\/[^/]+\/count$/.test(req.path) ? 'GET, HEAD' : undefined);
    if (allow !== undefined) {
      res.setHeader('allow', allow);
      sendError(res, new AppError('method_not_allowed', `${req.method} is not allowed on ${req.path}; use ${allow}.`), log, 'route');
    } else {
      sendError(res, new AppError('not_found', `No route ${req.method} ${req.path}.`), log, 'route');
    }
  });
  // Express's own errors (a malformed %-escape in the path, say) become JSON 400s, never HTML.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: number }).status;
    const error = status !== undefined && status >= 400 && status < 500 ? new AppError('bad_request', `The request could not be understood (${(err as Error).message}).`, { cause: err }) : err;
    sendError(res, error, log, `${req.method} ${req.path}`);
  });

  const server = http.createServer(app);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  return {
    server,
    listen: (port, host) => new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    }),
    beginShutdown: () => { shuttingDown = true; },
    close: () => new Promise((resolve) => {
      shuttingDown = true;
      server.close(() => resolve());
      server.closeIdleConnections();
      // Requests under way are waiting on the log; give them a moment, then cut.
      setTimeout(() => { server.closeAllConnections(); resolve(); }, 5_000).unref();
    }),
  };
}
