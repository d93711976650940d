import http from 'node:http';
import type { Duplex } from 'node:stream';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Config } from '../shared/config.js';
import { AppError, errorBody } from '../shared/errors.js';
import { checkJsonContentType, readBody, sendError, sendJson } from '../shared/http.js';
import { checkTenant, parseBatch } from '../shared/items.js';
import { newErrorId } from '../shared/log.js';
import type { Logger } from '../shared/log.js';
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

/** Above the usual client and load-balancer idle timeouts (60 s), so the client closes first, not us mid-request. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** Above the keep-alive timeout (the old Node advice for proxies); Node wants it <= requestTimeout. */
const HEADERS_TIMEOUT_MS = 66_000;
/** Time to receive a whole request (headers and body, not our answer): bounds slow uploads. */
const REQUEST_TIMEOUT_MS = 120_000;
/** How long close() waits for requests in flight before cutting their connections. */
const CLOSE_GRACE_MS = 10_000;

const JSON_TYPE = 'application/json; charset=utf-8';
const ITEMS_PREFIX = '/items/';
const COUNT_SUFFIX = '/count';
const COUNT_BY_QUERY = '/items/count';

/** Passes a worker's answer through: its status and body as they are. */
function reply(res: http.ServerResponse, answer: ForwardResponse, closing: boolean): void {
  if (closing) res.shouldKeepAlive = false;
  res.writeHead(answer.status, ['content-type', JSON_TYPE, 'content-length', String(answer.body.length)]);
  res.end(answer.body);
}

/** One percent-encoded path segment → the tenant; a malformed escape is the client's mistake. */
function decodeSegment(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch (err) {
    throw new AppError('bad_request', `The tenant segment ${JSON.stringify(raw.slice(0, 80))} is not valid percent-encoding (UTF-8).`, { cause: err });
  }
}

function decodeQueryPart(raw: string): string {
  const text = raw.includes('+') ? raw.replaceAll('+', ' ') : raw;
  return text.includes('%') ? decodeURIComponent(text) : text;
}

/**
 * The `tenant` parameter of a query string, decoded strictly: a malformed escape is a 400,
 * not a silently different tenant (URLSearchParams would substitute U+FFFD).
 */
function tenantFromQuery(query: string): string {
  let tenant: string | undefined;
  let seen = 0;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const rawKey = eq === -1 ? pair : pair.slice(0, eq);
    let key: string;
    try {
      key = decodeQueryPart(rawKey);
    } catch {
      continue; // some other, malformed parameter: not ours to judge
    }
    if (key !== 'tenant') continue;
    seen++;
    const rawValue = eq === -1 ? '' : pair.slice(eq + 1);
    try {
      tenant = decodeQueryPart(rawValue);
    } catch (err) {
      throw new AppError('bad_request', `The tenant parameter ${JSON.stringify(rawValue.slice(0, 80))} is not valid percent-encoding (UTF-8).`, { cause: err });
    }
  }
  if (seen === 0) throw new AppError('invalid_tenant', 'The tenant is invalid: the `tenant` query parameter is missing (GET /items/count?tenant=NAME).');
  if (seen > 1) throw new AppError('invalid_tenant', 'The tenant is invalid: give the `tenant` query parameter once.');
  return tenant!;
}

/** Errors raised by express or its router (a malformed escape in a route parameter, say) are the client's. */
function asClientError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const status = (err as { status?: unknown; statusCode?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (err instanceof URIError) return new AppError('bad_request', 'The URL has a malformed percent-escape.', { cause: err });
  if (typeof status === 'number' && status >= 400 && status < 500) return new AppError('bad_request', undefined, { cause: err });
  return err;
}

/**
 * The coordinator's HTTP API (see DESIGN.md "HTTP API of the coordinator").
 *
 * Express routes every path. In front of it, a few string comparisons send the hot
 * routes (POST /items, GET /items/{tenant}/count, GET /items/count?tenant=) straight to
 * their handlers, the same functions the express routes call. Why: measured on the
 * 2-core box against a trivial fake worker (autocannon -c 32, 1-item batches,
 * coalescing on), going through express 5 cost the coordinator ~78 µs of CPU per
 * request against ~25 µs with the bypass, and cut throughput from ~30,000 to ~11,000
 * req/s (express sets prototypes, parses the URL and walks its layer stack each time).
 * Anything the check does not recognise exactly (other methods, HEAD, a trailing
 * slash, other letter case, a query on POST) goes through express, which gives the
 * same answers, so the bypass changes speed only.
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

  async function count(res: http.ServerResponse, tenant: string): Promise<void> {
    checkTenant(tenant, config.max_tenant_length);
    reply(res, await forwarder.forward({ method: 'GET', path: `/items/count?tenant=${encodeURIComponent(tenant)}` }), shuttingDown);
  }

  async function countBySegment(res: http.ServerResponse, rawSegment: string): Promise<void> {
    try {
      await count(res, decodeSegment(rawSegment));
    } catch (err) {
      sendError(res, err, log, 'GET /items/{tenant}/count');
    }
  }

  async function countByQuery(res: http.ServerResponse, url: string): Promise<void> {
    try {
      const q = url.indexOf('?');
      await count(res, tenantFromQuery(q === -1 ? '' : url.slice(q + 1)));
    } catch (err) {
      sendError(res, err, log, 'GET /items/count');
    }
  }

  // The handlers above catch everything; this only reports a bug in that promise.
  const unexpected = (err: unknown): void => {
    log.error('request handler failed', err);
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', false); // the one query parameter we read is decoded strictly by tenantFromQuery

  app.use((_req: Request, res: Response, next: NextFunction) => {
    if (shuttingDown) refuseShuttingDown(res);
    else next();
  });

  const notAllowed = (allow: string) => (req: Request, res: Response): void => {
    res.setHeader('allow', allow);
    sendError(res, new AppError('method_not_allowed', `${req.method} is not allowed here; use ${allow}.`), log, `${req.method} ${req.path}`);
  };

  app.route('/')
    .get((_req: Request, res: Response) => sendJson(res, 200, { status: 'ok', workers: status() }))
    .all(notAllowed('GET, HEAD'));
  app.route('/items')
    .post((req: Request, res: Response) => ingest(req, res))
    .all(notAllowed('POST'));
  app.route(COUNT_BY_QUERY)
    .get((req: Request, res: Response) => countByQuery(res, req.originalUrl))
    .all(notAllowed('GET, HEAD'));
  app.route('/items/:tenant/count')
    // The router has decoded req.params.tenant already; take the raw segment so both paths decode alike.
    .get((req: Request, res: Response) => countBySegment(res, req.path.split('/')[2] ?? ''))
    .all(notAllowed('GET, HEAD'));

  app.use((req: Request, res: Response) => {
    sendError(res, new AppError('not_found', `No route for ${req.method} ${req.path.slice(0, 200)}.`), log, 'unknown route');
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    sendError(res, asClientError(err), log, `${req.method} ${req.path.slice(0, 200)}`);
  });

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method;
    const url = req.url!;
    if (method === 'POST') {
      if (url === '/items') {
        if (shuttingDown) refuseShuttingDown(res);
        else ingest(req, res).catch(unexpected);
        return;
      }
    } else if (method === 'GET' && url.startsWith(ITEMS_PREFIX)) {
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      if (path === COUNT_BY_QUERY) {
        if (shuttingDown) refuseShuttingDown(res);
        else countByQuery(res, url).catch(unexpected);
        return;
      }
      if (path.endsWith(COUNT_SUFFIX)) {
        const segment = path.slice(ITEMS_PREFIX.length, -COUNT_SUFFIX.length);
        if (segment.length > 0 && !segment.includes('/')) {
          if (shuttingDown) refuseShuttingDown(res);
          else countBySegment(res, segment).catch(unexpected);
          return;
        }
      }
    }
    app(req, res);
  }

  const server = http.createServer(onRequest);
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;

  // Node's own answer to an unparsable request is a bare 400 with no body: answer JSON like every other error.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const pending = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent === true) {
      socket.destroy();
      return;
    }
    const reason = err.code === 'HPE_HEADER_OVERFLOW' ? 'The request headers are too large.'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'The request took too long to arrive.'
        : 'The request is not valid HTTP.';
    const id = log.error(`bad HTTP from a client: ${err.code ?? ''} ${err.message}`);
    const body = JSON.stringify(errorBody(new AppError('bad_request', reason), id));
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });

  async function closeServer(): Promise<void> {
    beginShutdown();
    await new Promise<void>((resolve) => {
      // Connections that finish their request after this point would sit idle until the keep-alive timeout.
      const idle = setInterval(() => server.closeIdleConnections(), 100);
      const cut = setTimeout(() => {
        log.warn(`requests still running after ${CLOSE_GRACE_MS / 1000} s of shutdown: closing their connections`);
        server.closeAllConnections();
      }, CLOSE_GRACE_MS);
      server.close(() => {
        clearInterval(idle);
        clearTimeout(cut);
        resolve();
      });
      server.closeIdleConnections();
    });
  }

  return {
    server,
    setConfig(next: Config): void {
      config = next;
    },
    beginShutdown,
    listen(port: number, host: string): Promise<void> {
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => {
          server.off('listening', onListening);
          reject(err);
        };
        const onListening = (): void => {
          server.off('error', onError);
          resolve();
        };
        server.once('error', onError);
        server.once('listening', onListening);
        server.listen(port, host);
      });
    },
    close(): Promise<void> {
      closing ??= closeServer();
      return closing;
    },
  };
}
