import http from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import type { Config } from '../shared/config.js';
import { AppError, errorBody } from '../shared/errors.js';
import { checkJsonContentType, readBody, sendError, sendJson } from '../shared/http.js';
import { addItemRoutes, closeServer as closeGracefully, createApp, createHttpServer, listen, matchHotRoute, tenantOf, type HotRoute } from '../shared/http-server.js';
import { checkTenant, parseBatch } from '../shared/items.js';
import { newErrorId, type Logger } from '../shared/log.js';
import type { Coalescer } from './coalescer.js';
import type { Forwarder, ForwardResponse } from './forwarder.js';

export interface CoordinatorServerOptions {
  /** Limits (`max_body_bytes`, `max_batch_items`, id and tenant lengths) are read from it. */
  readonly config: Config;
  readonly log: Logger;
  /** Count queries go straight to a worker through it. */
  readonly forwarder: Forwarder;
  /** Batches go through it (merged with concurrent ones when `coalesce` is on). */
  readonly coalescer: Coalescer;
  /** The workers' state for `GET /` (the supervisor's list). */
  readonly status: () => unknown;
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

const JSON_TYPE = 'application/json; charset=utf-8';

/** Passes a worker's answer through: its status and body as they are. */
function reply(res: http.ServerResponse, answer: ForwardResponse, closing: boolean): void {
  if (closing) res.shouldKeepAlive = false;
  res.writeHead(answer.status, ['content-type', JSON_TYPE, 'content-length', String(answer.body.length)]);
  res.end(answer.body);
}

/**
 * The coordinator's HTTP API (see DESIGN.md "HTTP API of the coordinator"): validate,
 * then hand batches to the coalescer and counts to the forwarder. The hot routes skip
 * express (see matchHotRoute); everything else goes through it with the same answers.
 */
export function createCoordinatorServer(options: CoordinatorServerOptions): CoordinatorServer {
  const { log, forwarder, coalescer, status } = options;
  let config = options.config;
  let shuttingDown = false;
  let closing: Promise<void> | undefined;

  /** The 503 every request gets once shutdown began; one log line (and id) serves them all. */
  let shutdownAnswer = '';

  function refuseShuttingDown(res: http.ServerResponse): void {
    res.shouldKeepAlive = false;
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
      checkJsonContentType(req);
      const limits = config;
      const body = await readBody(req, limits.max_body_bytes);
      const items = parseBatch(body, limits);
      reply(res, await coalescer.submit(items, body), shuttingDown);
    } catch (err) {
      sendError(res, err, log, 'POST /items');
    }
  }

  async function count(res: http.ServerResponse, route: Exclude<HotRoute, { kind: 'ingest' }>): Promise<void> {
    try {
      const tenant = checkTenant(tenantOf(route), config.max_tenant_length);
      reply(res, await forwarder.forward({ method: 'GET', path: `/items/count?tenant=${encodeURIComponent(tenant)}` }), shuttingDown);
    } catch (err) {
      sendError(res, err, log, 'GET count');
    }
  }

  // The handlers above catch everything; this only reports a bug in that promise.
  const unexpected = (err: unknown): void => {
    log.error('request handler failed', err);
  };

  const app = createApp(log, (routes, notAllowed) => {
    routes.use((_req: Request, res: Response, next: NextFunction) => {
      if (shuttingDown) refuseShuttingDown(res);
      else next();
    });
    routes.route('/')
      .get((_req: Request, res: Response) => sendJson(res, 200, { status: 'ok', workers: status() }))
      .all(notAllowed('GET, HEAD'));
    addItemRoutes(routes, notAllowed, { ingest, count });
  });

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const route = matchHotRoute(req.method, req.url!);
    if (route === undefined) {
      app(req, res);
    } else if (shuttingDown) {
      refuseShuttingDown(res);
    } else if (route.kind === 'ingest') {
      ingest(req, res).catch(unexpected);
    } else {
      count(res, route).catch(unexpected);
    }
  }

  const server = createHttpServer(onRequest, log);

  async function closeServer(): Promise<void> {
    beginShutdown();
    await closeGracefully(server, CLOSE_GRACE_MS, log);
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
