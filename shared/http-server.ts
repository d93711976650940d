import type http from 'node:http';
import type { Express, NextFunction, Request, Response } from 'express';
import { AppError } from './errors.js';
import { lazyModule } from './lazy-module.js';
import type { Logger } from './log.js';
import type { RequestMetrics } from './request-metrics.js';
import { sendError } from './responses.js';
import type { RouteMatch, RouteOf, RouteTable, ServerRole } from './routes.js';

/**
 * The front door both servers share: every request is matched once against the route
 * table (shared/routes.ts); hot routes go straight to their handler, the others through
 * express, and every error express or Node would answer in HTML or with an empty body is
 * answered as JSON.
 */

/** Handles one route; a returned promise must settle (a rejection is logged as a bug). */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse, match: RouteMatch) => Promise<void> | void;

export type RouteHandlers<R extends ServerRole> = { readonly [N in RouteOf<R>]: RouteHandler };

export interface FrontDoorOptions<R extends ServerRole> {
  readonly table: RouteTable<R>;
  readonly handlers: RouteHandlers<R>;
  readonly log: Logger;
  /**
   * Runs before routing (a shutdown 503, a forwarding loop); returns true when it answered
   * the request itself. `match` is undefined for an unknown route.
   */
  readonly intercept?: (req: http.IncomingMessage, res: http.ServerResponse, match: ReturnType<RouteTable<R>['match']>) => boolean;
  /** Counts and times every request by route and status (`GET /metrics`). */
  readonly metrics?: RequestMetrics;
}

/** Loaded on the first request that needs it (see lazyModule): the hot routes never do. */
export const loadExpress = lazyModule<typeof import('express')>('express');

/** Errors raised by express or its router (a malformed escape in a route parameter, say) are the client's. */
function asClientError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const status = (err as { status?: unknown; statusCode?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (err instanceof URIError) return new AppError('bad_request', 'The URL has a malformed percent-escape.', { cause: err });
  if (typeof status === 'number' && status >= 400 && status < 500) return new AppError('bad_request', undefined, { cause: err });
  return err;
}

/** `/items/{tenant}/count` → `/items/:tenant/count` (braces mean an optional part to express 5). */
function expressPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ':$1');
}

/** `METHOD /path` of a request, for a log line (no query: it may hold what a client typed). */
export function describeRequest(req: http.IncomingMessage): string {
  const url = req.url ?? '';
  return `${req.method} ${(url.split('?')[0] ?? '').slice(0, 200)}`;
}

/** The request listener of a server with the given route table and handlers. */
export function createFrontDoor<R extends ServerRole>(options: FrontDoorOptions<R>): http.RequestListener {
  const { table, handlers, log, intercept, metrics } = options;

  // The handlers catch what they expect; this only reports a bug in one of their promises.
  const unexpected = (err: unknown): void => {
    log.error('request handler failed', err);
  };
  const run = (handler: RouteHandler, req: http.IncomingMessage, res: http.ServerResponse, match: RouteMatch): void => {
    try {
      const pending = handler(req, res, match);
      if (pending !== undefined) pending.catch(unexpected);
    } catch (err) {
      sendError(res, err, log, describeRequest(req));
    }
  };

  const build = (): Express => {
    const app = loadExpress()();
    app.disable('x-powered-by');
    app.set('etag', false);
    app.set('query parser', false); // the one query parameter we read is decoded strictly (tenant-param.ts)
    for (const [name, spec] of table.entries()) {
      if (spec.lane !== 'express') continue;
      // The front door matched this request already; matching again reads it the same way.
      app.all(expressPath(spec.path), (req: Request, res: Response, next: NextFunction) => {
        const match = table.match(req.method, req.originalUrl);
        if (match?.kind === 'route' && match.name === name) run(handlers[name], req, res, match);
        else next();
      });
    }
    app.use((req: Request, res: Response) => {
      sendError(res, new AppError('not_found', `No route for ${req.method} ${req.path.slice(0, 200)}.`), log, 'unknown route');
    });
    app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      sendError(res, asClientError(err), log, describeRequest(req));
    });
    return app;
  };
  // Built at the first request that needs it; a failure (no file descriptor left to read
  // express with) is that request's 500 and is tried again at the next one.
  let built: Express | undefined;
  const app = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    try {
      built ??= build();
    } catch (err) {
      sendError(res, err, log, describeRequest(req));
      return;
    }
    built(req, res);
  };

  return (req, res) => {
    const match = table.match(req.method, req.url!);
    metrics?.track(res, match?.name);
    if (intercept?.(req, res, match) === true) return;
    if (match === undefined) {
      app(req, res);
    } else if (match.kind === 'method-not-allowed') {
      res.setHeader('allow', match.allow);
      sendError(res, new AppError('method_not_allowed', `${req.method} is not allowed here; use ${match.allow}.`), log, describeRequest(req));
    } else if (match.spec.lane === 'express') {
      app(req, res);
    } else {
      run(handlers[match.name], req, res, match);
    }
  };
}
