import type { EventEmitter } from 'node:events';
import autocannon from 'autocannon';
import { Samples } from './stats.js';

/**
 * Closed-loop HTTP load with autocannon's programmatic API: `connections` clients each
 * keep one request in flight; every request gets a fresh body from `body()`. Latencies
 * are taken from autocannon's per-response timing (sub-millisecond; its own histogram
 * rounds to whole milliseconds) and only for 2xx answers.
 */
export interface LoadOptions {
  /** Base URL of the target, e.g. http://127.0.0.1:5000 */
  readonly url: string;
  readonly path?: string;
  readonly method?: 'POST' | 'GET';
  readonly connections: number;
  readonly durationSec: number;
  /** A run of this length first, its figures thrown away. 0: none. */
  readonly warmupSec: number;
  /** The body of the next request (POST). */
  readonly body?: () => string;
  /** Items per request, to turn requests into items. @default 1 */
  readonly itemsPerRequest?: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly reqPerSec: number;
  readonly itemsPerSec: number;
  /** Latency of 2xx answers, ms. */
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
  readonly non2xx: number;
  readonly statusCodes: Record<string, number>;
  readonly durationSec: number;
}

interface Run {
  ok: number;
  latencies: Samples;
  statusCodes: Record<string, number>;
  errors: number;
  elapsedMs: number;
}

function once(options: LoadOptions, durationSec: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const latencies = new Samples();
    const statusCodes: Record<string, number> = {};
    let ok = 0;
    let errors = 0;
    const body = options.body;
    const started = performance.now();
    const windowEnd = started + durationSec * 1000;
    const opts = {
      url: options.url,
      connections: options.connections,
      duration: durationSec,
      pipelining: 1,
      timeout: 30,
      // The run ends at the first sample tick after `duration`: tick often so it ends on time.
      sampleInt: 100,
      requests: [{
        method: options.method ?? 'POST',
        path: options.path ?? '/items',
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : {
          setupRequest: (request: autocannon.Request): autocannon.Request => {
            request.body = body();
            return request;
          },
        }),
      }],
    } as autocannon.Options;
    const instance = autocannon(opts, (err) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({ ok, latencies, statusCodes, errors, elapsedMs: Math.min(performance.now(), windowEnd) - started });
    }) as unknown as EventEmitter;
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      // Only answers within the run's window count (the run stops at the tick after it).
      if (performance.now() > windowEnd) return;
      statusCodes[status] = (statusCodes[status] ?? 0) + 1;
      if (status >= 200 && status < 300) {
        ok++;
        latencies.push(ms);
      }
    });
    instance.on('reqError', () => {
      errors++;
    });
  });
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (options.warmupSec > 0) await once(options, options.warmupSec);
  const run = await once(options, options.durationSec);
  const seconds = run.elapsedMs / 1000;
  const all = run.latencies.values();
  let sum = 0;
  for (const value of all) sum += value;
  const non2xx = Object.entries(run.statusCodes).reduce((n, [code, count]) => (code.startsWith('2') ? n : n + count), 0);
  return {
    requests: run.ok,
    reqPerSec: run.ok / seconds,
    itemsPerSec: (run.ok * (options.itemsPerRequest ?? 1)) / seconds,
    p50: run.latencies.quantile(0.5),
    p99: run.latencies.quantile(0.99),
    mean: all.length === 0 ? Number.NaN : sum / all.length,
    errors: run.errors,
    non2xx,
    statusCodes: run.statusCodes,
    durationSec: seconds,
  };
}
