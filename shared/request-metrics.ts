import type http from 'node:http';
import { FastCounter, FastHistogram, type CounterCell, type HistogramCell } from './fast-metrics.js';
import { LATENCY_BUCKETS, registry } from './metrics.js';
import type { RouteTable, ServerRole } from './routes.js';

/** The route label of a request that matched no route (its answer is a 404). */
export const UNKNOWN_ROUTE = 'unknown';

const requests = new FastCounter(registry, {
  name: 'countapp_http_requests_total',
  help: 'HTTP requests answered, by server role, route (the route table\'s name; "unknown" for a 404) and status.',
  labelNames: ['role', 'route', 'status'],
});

const durations = new FastHistogram(registry, {
  name: 'countapp_http_request_duration_seconds',
  help: 'Time from a request\'s headers to the end of its answer, by server role and route.',
  labelNames: ['role', 'route'],
  buckets: LATENCY_BUCKETS,
});

/** One route's cells: its latency histogram, and its counters by status (made on first use of each status). */
interface RouteCells {
  readonly route: string;
  readonly duration: HistogramCell;
  readonly byStatus: Map<number, CounterCell>;
}

/** What a tracked response carries until it is finished: set on the response itself, so tracking allocates nothing. */
const TRACKED = Symbol('countapp.tracked');
const STARTED = Symbol('countapp.started');

interface TrackedResponse extends http.ServerResponse {
  [TRACKED]: { readonly cells: RouteCells; readonly metrics: RequestMetrics };
  [STARTED]: number;
}

/** The 'finish' listener of every tracked response (one function for all: no closure per request). */
function onFinish(this: TrackedResponse): void {
  const { cells, metrics } = this[TRACKED];
  cells.duration.observe((performance.now() - this[STARTED]) / 1000);
  metrics.count(cells, this.statusCode);
}

/**
 * Counts and times the requests of one server (its role and route table). `track` runs
 * on every request: it notes the start and, when the answer is finished, adds it to its
 * route's cells — no label hashing, no closure, one listener.
 */
export class RequestMetrics {
  readonly #role: ServerRole;
  readonly #routes = new Map<string, { readonly cells: RouteCells; readonly metrics: RequestMetrics }>();

  constructor(table: RouteTable) {
    this.#role = table.role;
    for (const [name] of table.entries()) this.#routes.set(name, { cells: this.#cells(name), metrics: this });
    this.#routes.set(UNKNOWN_ROUTE, { cells: this.#cells(UNKNOWN_ROUTE), metrics: this });
  }

  /** Counts `res` under `route` (a route name, or undefined for an unknown route) once it is finished. */
  track(res: http.ServerResponse, route: string | undefined): void {
    const tracked = res as TrackedResponse;
    tracked[TRACKED] = this.#routes.get(route ?? UNKNOWN_ROUTE)!;
    tracked[STARTED] = performance.now();
    res.on('finish', onFinish);
  }

  /** Adds one answer of `status` to a route's counters (the first of a status makes its cell). */
  count(cells: RouteCells, status: number): void {
    let counter = cells.byStatus.get(status);
    if (counter === undefined) {
      counter = requests.cell(this.#role, cells.route, String(status));
      cells.byStatus.set(status, counter);
    }
    counter.value += 1;
  }

  /** Requests answered so far, by route and status (for the status route). */
  counts(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [route, { cells }] of this.#routes) {
      for (const [status, cell] of cells.byStatus) (out[route] ??= {})[String(status)] = cell.value;
    }
    return out;
  }

  /** The latency histogram of one route (for the dashboard's percentiles). */
  durations(route: string): HistogramCell | undefined {
    return this.#routes.get(route)?.cells.duration;
  }

  #cells(route: string): RouteCells {
    return { route, duration: durations.cell(this.#role, route), byStatus: new Map() };
  }
}
