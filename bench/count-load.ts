import type { BenchChild } from './child.js';
import { runLoad, type LoadResult } from './load.js';
import type { Profile } from './profile.js';
import type { Context } from './result.js';
import { Workload } from './workload.js';

/**
 * What the count sections (2, 8) share: the count probe (a forked bench/count-probe.ts,
 * open loop, each request timed) and the ingest load it runs under.
 */

/** What the count probe answers. */
export interface ProbeResult {
  readonly latencies: number[];
  readonly failures: number;
  readonly statuses: Record<string, number>;
  readonly error?: string;
}

/** Runs the count probe for `durationMs`: `profile.countRate` counts/s unless `rate` says otherwise; `query` is appended to each count's URL. */
export async function probe(child: BenchChild, url: string, profile: Profile, durationMs: number, options: { rate?: number; query?: string } = {}): Promise<ProbeResult> {
  child.send({ type: 'start', url, tenants: profile.tenants, rate: options.rate ?? profile.countRate, durationMs, ...(options.query === undefined ? {} : { query: options.query }) });
  const result = await child.next<ProbeResult>('result', durationMs + 60_000);
  if (result.error !== undefined) throw new Error(`count probe failed: ${result.error}`);
  return result;
}

/**
 * Reports a probe that lost answers (a problem of the run, not a missed target). With
 * `refusalsMeasured`, 503s are answers the product may give (a strong read it cannot make
 * sure of): the section reports them as a figure instead.
 */
export function checkProbe(ctx: Context, what: string, result: ProbeResult, expected: number, options: { refusalsMeasured?: boolean } = {}): void {
  const refused = options.refusalsMeasured === true ? (result.statuses['503'] ?? 0) : 0;
  if (result.failures - refused > 0 || result.latencies.length + refused < expected * 0.9) {
    ctx.problem(`${what}: ${result.latencies.length} answers of ~${expected} sent, ${result.failures} failed (${JSON.stringify(result.statuses)})`);
  }
}

/** Full ingest load on `url` for `durationSec`: 100-item batches at `profile.connections` from autocannon in this process, over the profile's tenants. */
export function ingestLoad(url: string, profile: Profile, durationSec: number, prefix: string): Promise<LoadResult> {
  const workload = new Workload({ prefix, tenants: profile.tenants, repeatRate: profile.repeatRate });
  return runLoad({ url, connections: profile.connections, durationSec, warmupSec: 0, body: () => workload.batch(100), itemsPerRequest: 100 });
}

/** Reports an ingest load where more than 1 % of requests failed. */
export function checkIngest(ctx: Context, what: string, ingest: LoadResult): void {
  const failed = ingest.errors + ingest.non2xx;
  if (ingest.requests === 0 || failed / (failed + ingest.requests) > 0.01) {
    ctx.problem(`ingest load during ${what}: ${failed} of ${failed + ingest.requests} requests failed (${JSON.stringify(ingest.statusCodes)})`);
  }
}
