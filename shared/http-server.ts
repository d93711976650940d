import http from 'node:http';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import { AppError, errorBody } from './errors.js';
import { sendError } from './http.js';
import type { Logger } from './log.js';

/**
 * What the coordinator's and the workers' HTTP servers share: the lean route check in
 * front of express, strict decoding of the tenant, JSON for every error express or Node
 * itself would answer in HTML or with an empty body, and listen/close.
 */

/** Above the usual client and load-balancer idle timeouts (60 s), so the client closes first, not us mid-request. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** Node checks headersTimeout <= requestTimeout; both bound slow clients. */
const HEADERS_TIMEOUT_MS = 66_000;
const REQUEST_TIMEOUT_MS = 120_000;

const ITEMS_PREFIX = '/items/';
const COUNT_SUFFIX = '/count';
export const COUNT_BY_QUERY = '/items/count';

/** A request on one of the hot routes, recognised by a few string comparisons. */
export type HotRoute =
  | { readonly kind: 'ingest' }
  | { readonly kind: 'count-query'; readonly query: string }
  | { readonly kind: 'count-segment'; readonly segment: string };

/**
 * The hot routes (POST /items, GET /items/{tenant}/count, GET /items/count?tenant=) by
 * exact match; undefined for anything else (other methods, HEAD, a trailing slash, a
 * query on POST), which express then routes with the same answers. Measured on the
 * 2-core box (autocannon -c 32, 1-item batches): express costs ~78 µs of CPU per request
 * against ~25 µs for this check, since it sets prototypes, parses the URL and walks its
 * layer stack every time.
 */
export function matchHotRoute(method: string | undefined, url: string): HotRoute | undefined {
  if (method === 'POST') return url === '/items' ? { kind: 'ingest' } : undefined;
  if (method !== 'GET' || !url.startsWith(ITEMS_PREFIX)) return undefined;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path === COUNT_BY_QUERY) return { kind: 'count-query', query: q === -1 ? '' : url.slice(q + 1) };
  if (path.endsWith(COUNT_SUFFIX)) {
    const segment = path.slice(ITEMS_PREFIX.length, -COUNT_SUFFIX.length);
    if (segment.length > 0 && !segment.includes('/')) return { kind: 'count-segment', segment };
  }
  return undefined;
}

/** One percent-encoded path segment → the tenant; a malformed escape is the client's mistake. */
export function decodeSegment(raw: string): string {
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
export function tenantFromQuery(query: string): string {
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

/** The tenant a hot count route names. */
export function tenantOf(route: Exclude<HotRoute, { kind: 'ingest' }>): string {
  return route.kind === 'count-query' ? tenantFromQuery(route.query) : decodeSegment(route.segment);
}

/** Errors raised by express or its router (a malformed escape in a route parameter, say) are the client's. */
function asClientError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const status = (err as { status?: unknown; statusCode?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (err instanceof URIError) return new AppError('bad_request', 'The URL has a malformed percent-escape.', { cause: err });
  if (typeof status === 'number' && status >= 400 && status < 500) return new AppError('bad_request', undefined, { cause: err });
  return err;
}

/** An express app with our settings; `routes` adds the routes, then come the JSON 404 and error handlers. */
export function createApp(log: Logger, routes: (app: express.Express, notAllowed: (allow: string) => express.RequestHandler) => void): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', false); // the one query parameter we read is decoded strictly by tenantFromQuery
  const notAllowed = (allow: string) => (req: Request, res: Response): void => {
    res.setHeader('allow', allow);
    sendError(res, new AppError('method_not_allowed', `${req.method} is not allowed here; use ${allow}.`), log, `${req.method} ${req.path.slice(0, 200)}`);
  };
  routes(app, notAllowed);
  app.use((req: Request, res: Response) => {
    sendError(res, new AppError('not_found', `No route for ${req.method} ${req.path.slice(0, 200)}.`), log, 'unknown route');
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    sendError(res, asClientError(err), log, `${req.method} ${req.path.slice(0, 200)}`);
  });
  return app;
}

/**
 * The item routes both servers have, for requests the hot-route check passed on to
 * express (HEAD, a trailing slash...): the same handlers, so the same answers.
 */
export function addItemRoutes(
  app: express.Express,
  notAllowed: (allow: string) => express.RequestHandler,
  handlers: {
    ingest: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>;
    count: (res: http.ServerResponse, route: Exclude<HotRoute, { kind: 'ingest' }>) => Promise<void>;
  },
): void {
  app.route('/items')
    .post((req: Request, res: Response) => handlers.ingest(req, res))
    .all(notAllowed('POST'));
  app.route(COUNT_BY_QUERY)
    .get((req: Request, res: Response) => handlers.count(res, { kind: 'count-query', query: req.originalUrl.split('?')[1] ?? '' }))
    .all(notAllowed('GET, HEAD'));
  app.route('/items/:tenant/count')
    // The router has decoded req.params.tenant already; take the raw segment so both paths decode alike.
    .get((req: Request, res: Response) => handlers.count(res, { kind: 'count-segment', segment: req.path.split('/')[2] ?? '' }))
    .all(notAllowed('GET, HEAD'));
}

/** An http.Server with our timeouts that answers even unparsable HTTP with a JSON 400. */
export function createHttpServer(handler: http.RequestListener, log: Logger): http.Server {
  const server = http.createServer(handler);
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  // Node's own answer to an unparsable request is a bare 400 with no body.
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
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  return server;
}

export function listen(server: http.Server, port: number, host: string): Promise<void> {
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
}

/** Stops listening, lets requests in flight finish (at most `graceMs`), then cuts every connection. */
export function closeServer(server: http.Server, graceMs: number, log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    // Connections that finish their request after this point would sit idle until the keep-alive timeout.
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const cut = setTimeout(() => {
      log.warn(`requests still running after ${graceMs / 1000} s of shutdown: closing their connections`);
      server.closeAllConnections();
    }, graceMs);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(cut);
      resolve();
    });
    server.closeIdleConnections();
  });
}
