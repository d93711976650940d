import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/helpers/cluster.js';
import { startChild, type BenchChild } from '../child.js';
import { checkIngest, checkProbe, ingestLoad, probe, type ProbeResult } from '../count-load.js';
import { startBenchCluster } from '../cluster.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { max, quantile } from '../stats.js';


/**
 * (8) `GET /items/{tenant}/count?consistency=strong` latency, with no load and while the
 * coordinator takes full ingest load (100-item batches at c=32 from autocannon in this
 * process), next to the eventual count in the same conditions. A strong read has every
 * worker flush the tenant (two rounds of `POST /internal/flush` to all of them) before
 * the count is read. The reads come from the count probe (bench/count-probe.ts), open
 * loop at `strongRate` per second, over the tenants being written. 4 workers, durability
 * fsync, worker_persist 5 (the default).
 */
export async function strongReadsSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  let cluster: Cluster | undefined;
  let child: BenchChild | undefined;
  try {
    cluster = await startBenchCluster(4, { worker_persist: 5, durability: 'fsync' });
    child = await startChild('count-probe.js', []);
    const idleMs = Math.max(500, profile.countSec * 200);
    const rate = profile.strongRate;
    const idleEventual = await probe(child, cluster.url, profile, idleMs, { rate });
    const idleStrong = await probe(child, cluster.url, profile, idleMs, { rate, query: 'consistency=strong' });
    ctx.progress(`no load: strong p50 ${quantile(idleStrong.latencies, 0.5).toFixed(2)} ms, p99 ${quantile(idleStrong.latencies, 0.99).toFixed(2)} ms (eventual p50 ${quantile(idleEventual.latencies, 0.5).toFixed(2)} ms), ${idleStrong.latencies.length} answers`);

    const load = ingestLoad(cluster.url, profile, profile.countWarmupSec + 2 * profile.countSec + 0.5, 's-');
    await sleep(profile.countWarmupSec * 1000);
    const loadedStrong = await probe(child, cluster.url, profile, profile.countSec * 1000, { rate, query: 'consistency=strong' });
    const loadedEventual = await probe(child, cluster.url, profile, profile.countSec * 1000, { rate });
    const ingest = await load;
    ctx.progress(`under load: strong p50 ${quantile(loadedStrong.latencies, 0.5).toFixed(2)} ms, p99 ${quantile(loadedStrong.latencies, 0.99).toFixed(2)} ms (eventual p50 ${quantile(loadedEventual.latencies, 0.5).toFixed(2)} ms); ingest meanwhile ${Math.round(ingest.itemsPerSec).toLocaleString('en-US')} items/s`);

    checkProbe(ctx, 'strong reads, no load', idleStrong, (rate * idleMs) / 1000);
    checkProbe(ctx, 'strong reads under load', loadedStrong, rate * profile.countSec, { refusalsMeasured: true });
    checkIngest(ctx, 'the strong-read probe', ingest);

    const section = `10. GET /items/{tenant}/count?consistency=strong (${rate} reads/s, 4 workers)`;
    const rows: Row[] = [
      { section, measure: 'strong read latency p50, no load', value: quantile(idleStrong.latencies, 0.5), unit: 'ms' },
      { section, measure: 'strong read latency p99, no load', value: quantile(idleStrong.latencies, 0.99), unit: 'ms' },
      { section, measure: 'eventual count latency p50, no load (same rate)', value: quantile(idleEventual.latencies, 0.5), unit: 'ms' },
      { section, measure: 'strong read latency p50 under ingest load', value: quantile(loadedStrong.latencies, 0.5), unit: 'ms' },
      { section, measure: 'strong read latency p99 under ingest load', value: quantile(loadedStrong.latencies, 0.99), unit: 'ms' },
      { section, measure: 'strong read latency max under ingest load', value: max(loadedStrong.latencies), unit: 'ms' },
      { section, measure: 'strong reads refused under ingest load (503)', value: loadedStrong.statuses['503'] ?? 0, unit: 'count' },
      { section, measure: 'eventual count latency p50 under load (same rate)', value: quantile(loadedEventual.latencies, 0.5), unit: 'ms' },
      { section, measure: 'ingest meanwhile (100-item, c=32, coordinator)', value: ingest.itemsPerSec, unit: 'items/s' },
    ];
    const summary = (result: ProbeResult): Record<string, unknown> => ({
      answers: result.latencies.length, failures: result.failures, statuses: result.statuses,
      p50: quantile(result.latencies, 0.5), p99: quantile(result.latencies, 0.99), max: max(result.latencies),
    });
    return {
      rows,
      raw: {
        cluster: '4 workers, durability fsync, worker_persist 5',
        rate,
        idle: { strong: summary(idleStrong), eventual: summary(idleEventual) },
        underLoad: { strong: summary(loadedStrong), eventual: summary(loadedEventual) },
        ingest: { itemsPerSec: ingest.itemsPerSec, reqPerSec: ingest.reqPerSec, p50: ingest.p50, p99: ingest.p99, statusCodes: ingest.statusCodes, errors: ingest.errors },
      },
    };
  } finally {
    await child?.stop();
    await cluster?.cleanup();
  }
}
