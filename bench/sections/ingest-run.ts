import { runLoad, type LoadResult } from '../load.js';
import type { Profile } from '../profile.js';
import type { Context } from '../result.js';
import type { Workload } from '../workload.js';

/** One load measurement of POST /items at `size` items per batch; flags a run with many failed requests. */
export async function measureIngest(ctx: Context, profile: Profile, label: string, url: string, size: number, workload: Workload): Promise<LoadResult> {
  const result = await runLoad({
    url,
    connections: profile.connections,
    durationSec: profile.loadSec,
    warmupSec: profile.warmupSec,
    body: () => workload.batch(size),
    itemsPerRequest: size,
  });
  const failed = result.errors + result.non2xx;
  const share = failed / Math.max(1, failed + result.requests);
  ctx.progress(`${label}: ${fmt(result.reqPerSec)} req/s, ${fmt(result.itemsPerSec)} items/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms${failed > 0 ? `, ${failed} failed (${JSON.stringify(result.statusCodes)}, ${result.errors} errors)` : ''}`);
  if (result.requests === 0 || share > 0.01) {
    ctx.problem(`${label}: ${failed} of ${failed + result.requests} requests failed (${JSON.stringify(result.statusCodes)}, ${result.errors} connection errors/timeouts)`);
  }
  return result;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** Medians of the load figures over rounds. */
export interface Summary {
  readonly reqPerSec: number;
  readonly itemsPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly rounds: readonly LoadResult[];
}
