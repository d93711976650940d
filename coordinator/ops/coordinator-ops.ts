import type http from 'node:http';
import type { Config } from '../../shared/config.js';
import type { RouteHandler } from '../../shared/http-server.js';
import type { Logger } from '../../shared/log.js';
import { commonOpsHandlers, type CommonOpsRoute } from '../../shared/ops-handlers.js';
import { Readiness } from '../../shared/readiness.js';
import { RequestMetrics } from '../../shared/request-metrics.js';
import { sendJson } from '../../shared/responses.js';
import type { RouteTable } from '../../shared/routes.js';
import type { ConfigProblem } from '../config-watcher.js';
import type { WorkerStatus } from '../managed-worker.js';
import { clusterMetrics } from './cluster-metrics.js';
import { dashboardPage } from './dashboard.js';
import { History } from './history.js';
import { itemsAccepted } from './metrics.js';
import { clusterStatus } from './status.js';

export interface CoordinatorOpsOptions {
  readonly table: RouteTable<'coordinator'>;
  readonly log: Logger;
  /** The config in force. */
  readonly config: () => Config;
  /** The supervisor's rows. */
  readonly workers: () => readonly WorkerStatus[];
  /** True once the coordinator is stopping. */
  readonly stopping: () => boolean;
  /** The config file's path, for the status route. @default '' */
  readonly configFile?: string;
  /** Why the config file on disk is not in force, if it is not. @default never */
  readonly configProblem?: () => ConfigProblem | undefined;
}

/** The count routes, whose latency the dashboard draws. */
const COUNT_ROUTES = ['countBySegment', 'countByQuery', 'counts'];

/** The coordinator's operations routes and what they read. */
export type CoordinatorOpsRoute = CommonOpsRoute | 'status' | 'dashboard';

/**
 * The coordinator's operations side: request metrics for its front door, readiness,
 * `/status` (from the supervisor's rows and each worker's last health answer), `/metrics`
 * (its own and its workers'), the dashboard and the history it draws.
 */
export class CoordinatorOps {
  /** Handed to the front door, which counts and times every request with it. */
  readonly requests: RequestMetrics;
  readonly #options: CoordinatorOpsOptions;
  readonly #readiness: Readiness;
  readonly #history: History;
  #page: string | undefined;

  constructor(options: CoordinatorOpsOptions) {
    this.#options = options;
    this.requests = new RequestMetrics(options.table);
    this.#readiness = new Readiness(options.log, () => this.#notReady(), () => ({ liveWorkers: this.#live() }));
    this.#history = new History({
      itemsAccepted: () => itemsAccepted.value,
      countLatency: () => COUNT_ROUTES.flatMap((route) => this.requests.durations(route) ?? []),
    });
  }

  start(): void {
    this.#history.start();
  }

  /** The handlers of the operations routes. */
  handlers(): { readonly [N in CoordinatorOpsRoute]: RouteHandler } {
    const { log, workers } = this.#options;
    return {
      ...commonOpsHandlers({ role: 'coordinator', readiness: this.#readiness, metrics: (format) => clusterMetrics(format, workers()), log }),
      status: (_req, res) => sendJson(res, 200, this.status(), { 'cache-control': 'no-store' }),
      dashboard: (_req, res) => this.#sendPage(res),
    };
  }

  /** The `GET /status` body. */
  status(): Record<string, unknown> {
    const { config, configFile, configProblem, workers } = this.#options;
    return clusterStatus({
      configFile: configFile ?? '',
      config,
      configError: configProblem ?? (() => undefined),
      workers,
      notReady: () => this.#notReady(),
      requests: () => this.requests.counts(),
      itemsAccepted: () => itemsAccepted.value,
      history: () => ({ intervalSeconds: this.#history.intervalSeconds, points: this.#history.points() }),
    });
  }

  close(): Promise<void> {
    return this.#history.close();
  }

  #live(): number {
    return this.#options.workers().filter((row) => row.state === 'up').length;
  }

  /** Why the coordinator cannot serve now, or undefined when it can. */
  #notReady(): string | undefined {
    if (this.#options.stopping()) return 'the coordinator is stopping';
    const rows = this.#options.workers();
    if (rows.length === 0) return 'the config lists no workers';
    if (rows.some((row) => row.state === 'up')) return undefined;
    return `no worker is live (${rows.map((row) => `${row.id} ${row.state}`).join(', ')})`;
  }

  #sendPage(res: http.ServerResponse): void {
    this.#page ??= dashboardPage();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(this.#page), 'cache-control': 'no-cache' });
    res.end(this.#page);
  }
}
