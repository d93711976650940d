import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/helpers/cluster.js';
import { startChild, type BenchChild } from '../child.js';
import { checkIngest, checkProbe, ingestLoad, probe } from '../count-load.js';
import { startBenchCluster } from '../cluster.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { max, quantile } from '../stats.js';

/**
 * (2) GET /items/{tenant}/count latency while the coordinator takes full ingest load
 * (100-item batches at c=32 from autocannon in this process). The counts come from a
 * separate process (bench/count-probe.ts) at a fixed rate, open loop, each timed; the
 * tenants are the ones being written. Also the same probe with no load, as a baseline
 * (after a second of untimed counts).
 * 4 workers, durability fsync, worker_persist 5 (the default: persists happen during
 * the window).
 */
export async function countSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  let cluster: Cluster | undefined;
  let child: BenchChild | undefined;
  try {
    cluster = await startBenchCluster(4, { worker_persist: 5, durability: 'fsync' });
    child = await startChild('count-probe.js', []);
    // A new cluster's first second of counts is start-up (code compiled, connections
    // opened in every process: p99 40-50 ms here), not what a quiet cluster answers.
    await probe(child, cluster.url, profile, 1000);
    const idle = await probe(child, cluster.url, profile, Math.max(500, profile.countSec * 200));
    ctx.progress(`counts, no load: ${idle.latencies.length} answers, p50 ${quantile(idle.latencies, 0.5).toFixed(2)} ms, p99 ${quantile(idle.latencies, 0.99).toFixed(2)} ms`);

    const load = ingestLoad(cluster.url, profile, profile.countWarmupSec + profile.countSec + 0.5, 'c-');
    await sleep(profile.countWarmupSec * 1000);
    const loaded = await probe(child, cluster.url, profile, profile.countSec * 1000);
    const ingest = await load;

    const p50 = quantile(loaded.latencies, 0.5);
    const p99 = quantile(loaded.latencies, 0.99);
    ctx.progress(`counts under load: ${loaded.latencies.length} answers, p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max(loaded.latencies).toFixed(2)} ms; ingest meanwhile ${Math.round(ingest.itemsPerSec).toLocaleString('en-US')} items/s`);
    checkProbe(ctx, 'count probe under load', loaded, profile.countRate * profile.countSec);
    checkIngest(ctx, 'the count probe', ingest);

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
