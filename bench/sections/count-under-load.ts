import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/helpers/cluster.js';
import { startChild, type BenchChild } from '../child.js';
import { startBenchCluster } from '../cluster.js';
import { runLoad } from '../load.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { max, quantile } from '../stats.js';
import { Workload } from '../workload.js';

/**
 * (2) GET /items/{tenant}/count latency while the coordinator takes full ingest load
 * (100-item batches at c=32 from autocannon in this process). The counts come from a
 * separate process (bench/count-probe.ts) at a fixed rate, open loop, each timed; the
 * tenants are the ones being written. Also the same probe with no load, as a baseline.
 * 4 workers, durability fsync, worker_persist 5 (the default: persists happen during
 * the window).
 */
export interface ProbeResult {
  readonly latencies: number[];
  readonly failures: number;
  readonly statuses: Record<string, number>;
  readonly error?: string;
}

/** Runs the count probe (bench/count-probe.ts) for `durationMs`: `profile.countRate` counts/s unless `rate` says otherwise; `query` is appended to each count's URL. */
export async function probe(child: BenchChild, url: string, profile: Profile, durationMs: number, options: { rate?: number; query?: string } = {}): Promise<ProbeResult> {
  child.send({ type: 'start', url, tenants: profile.tenants, rate: options.rate ?? profile.countRate, durationMs, ...(options.query === undefined ? {} : { query: options.query }) });
  const result = await child.next<ProbeResult>('result', durationMs + 60_000);
  if (result.error !== undefined) throw new Error(`count probe failed: ${result.error}`);
  return result;
}

export async function countSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  let cluster: Cluster | undefined;
  let child: BenchChild | undefined;
  try {
    cluster = await startBenchCluster(4, { worker_persist: 5, durability: 'fsync' });
    child = await startChild('count-probe.js', []);
    const idle = await probe(child, cluster.url, profile, Math.max(500, profile.countSec * 200));
    ctx.progress(`counts, no load: ${idle.latencies.length} answers, p50 ${quantile(idle.latencies, 0.5).toFixed(2)} ms, p99 ${quantile(idle.latencies, 0.99).toFixed(2)} ms`);

    const workload = new Workload({ prefix: 'c-', tenants: profile.tenants, repeatRate: profile.repeatRate });
    const loadSec = profile.countWarmupSec + profile.countSec + 0.5;
    const load = runLoad({
      url: cluster.url,
      connections: profile.connections,
      durationSec: loadSec,
      warmupSec: 0,
      body: () => workload.batch(100),
      itemsPerRequest: 100,
    });
    await sleep(profile.countWarmupSec * 1000);
    const loaded = await probe(child, cluster.url, profile, profile.countSec * 1000);
    const ingest = await load;

    const p50 = quantile(loaded.latencies, 0.5);
    const p99 = quantile(loaded.latencies, 0.99);
    ctx.progress(`counts under load: ${loaded.latencies.length} answers, p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max(loaded.latencies).toFixed(2)} ms; ingest meanwhile ${Math.round(ingest.itemsPerSec).toLocaleString('en-US')} items/s`);
    const expected = profile.countRate * profile.countSec;
    if (loaded.failures > 0 || loaded.latencies.length < expected * 0.9) {
      ctx.problem(`count probe under load: ${loaded.latencies.length} answers of ~${expected} sent, ${loaded.failures} failed (${JSON.stringify(loaded.statuses)})`);
    }
    const failed = ingest.errors + ingest.non2xx;
    if (ingest.requests === 0 || failed / (failed + ingest.requests) > 0.01) {
      ctx.problem(`ingest load during the count probe: ${failed} of ${failed + ingest.requests} requests failed (${JSON.stringify(ingest.statusCodes)})`);
    }

    const section = `2. GET /items/{tenant}/count under full ingest load (${profile.countRate} counts/s)`;
    const rows: Row[] = [
      { section, measure: 'count latency p50 under load', value: p50, unit: 'ms' },
      { section, measure: 'count latency p99 under load', value: p99, unit: 'ms', target: { op: '<', value: 20 } },
      { section, measure: 'count latency max under load', value: max(loaded.latencies), unit: 'ms' },
      { section, measure: 'ingest meanwhile (100-item, c=32, coordinator)', value: ingest.itemsPerSec, unit: 'items/s' },
      { section, measure: 'count latency p50 with no load', value: quantile(idle.latencies, 0.5), unit: 'ms' },
      { section, measure: 'count latency p99 with no load', value: quantile(idle.latencies, 0.99), unit: 'ms' },
    ];
    return {
      rows,
      raw: {
        cluster: '4 workers, durability fsync, worker_persist 5',
        rate: profile.countRate,
        underLoad: { answers: loaded.latencies.length, failures: loaded.failures, statuses: loaded.statuses, p50, p99, max: max(loaded.latencies), p999: quantile(loaded.latencies, 0.999) },
        idle: { answers: idle.latencies.length, p50: quantile(idle.latencies, 0.5), p99: quantile(idle.latencies, 0.99) },
        ingest: { itemsPerSec: ingest.itemsPerSec, reqPerSec: ingest.reqPerSec, p50: ingest.p50, p99: ingest.p99, statusCodes: ingest.statusCodes, errors: ingest.errors },
      },
    };
  } finally {
    await child?.stop();
    await cluster?.cleanup();
  }
}
