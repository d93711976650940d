import type http from 'node:http';
import type { RouteHandler } from './http-server.js';
import type { Logger } from './log.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import { openApiText } from './openapi.js';
import type { Readiness } from './readiness.js';
import { sendError, sendJson } from './responses.js';
import type { RouteMatch, RouteName, ServerRole } from './routes.js';

/** Routes that observe rather than act: a stopping server still answers them (the others get 503 `shutting_down`). */
export const OBSERVING_ROUTES: ReadonlySet<RouteName> = new Set<RouteName>(['healthz', 'healthAlias', 'readyz', 'status', 'metrics', 'openapi', 'dashboard']);

/** The operations routes both servers have. */
export type CommonOpsRoute = 'healthz' | 'healthAlias' | 'readyz' | 'metrics' | 'openapi';

/** `?format=json` asks for prom-client's JSON instead of the text format (what the coordinator scrapes from its workers). */
export type MetricsFormat = 'text' | 'json';

export interface CommonOpsOptions {
  readonly role: ServerRole;
  readonly readiness: Readiness;
  /** This server's metrics in the asked format (the coordinator's include its workers'). */
  readonly metrics: (format: MetricsFormat) => Promise<string>;
  readonly log: Logger;
}

function metricsFormat(match: RouteMatch): MetricsFormat {
  return new URLSearchParams(match.query).get('format') === 'json' ? 'json' : 'text';
}

function sendText(res: http.ServerResponse, contentType: string, text: string): void {
  res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** The handlers of the operations routes both servers answer alike. */
export function commonOpsHandlers(options: CommonOpsOptions): { readonly [N in CommonOpsRoute]: RouteHandler } {
  const { role, readiness, metrics, log } = options;
  const live: RouteHandler = (_req, res) => sendJson(res, 200, { status: 'ok' });
  return {
    healthz: live,
    healthAlias: live,
    readyz: (_req, res) => readiness.answer(res),
    metrics: async (_req, res, match) => {
      const format = metricsFormat(match);
      try {
        sendText(res, format === 'json' ? 'application/json; charset=utf-8' : METRICS_CONTENT_TYPE, await metrics(format));
      } catch (err) {
        sendError(res, err, log, 'GET /metrics');
      }
    },
    openapi: (_req, res) => sendText(res, 'application/json; charset=utf-8', openApiText(role)),
  };
}
