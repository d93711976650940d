import type { Cluster } from '../../test/helpers/cluster.js';
import { freePorts } from '../../test/helpers/ports.js';
import { startChild, type BenchChild } from '../child.js';
import { startBenchCluster } from '../cluster.js';
import type { LoadResult } from '../load.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { median } from '../stats.js';
import { Workload } from '../workload.js';
import { measureIngest, type Summary } from './ingest-run.js';

/**
 * (1) POST /items throughput and latency, 1-item and 100-item batches at c=32, through
 * the coordinator, through a minimal proxy (bench/proxy.ts, its own process) and straight
 * to one worker, alternated round by round (the starting target rotates each round so
 * none always runs first). Each round is a fresh 4-worker cluster (durability fsync,
 * worker_persist 5), so no round pays for the ids the earlier ones left in memory.
 */
export const TARGETS = ['coordinator', 'proxy', 'direct'] as const;
export type Target = (typeof TARGETS)[number];

export const BATCH_SIZES = [100, 1] as const;

export function summarize(rounds: readonly LoadResult[]): Summary {
  return {
    reqPerSec: median(rounds.map((r) => r.reqPerSec)),
    itemsPerSec: median(rounds.map((r) => r.itemsPerSec)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    rounds,
  };
}

export async function ingestSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const rows: Row[] = [];
  const raw: Record<string, Record<Target, Summary>> = {};
  for (const size of BATCH_SIZES) {
    const results: Record<Target, LoadResult[]> = { coordinator: [], proxy: [], direct: [] };
    for (let round = 0; round < profile.rounds; round++) {
      let cluster: Cluster | undefined;
      let proxy: BenchChild | undefined;
      try {
        cluster = await startBenchCluster(4, { worker_persist: 5, durability: 'fsync' });
        const [proxyPort] = await freePorts(1);
        proxy = await startChild('proxy.js', [String(proxyPort), ...cluster.workerUrls]);
        const urls: Record<Target, string> = {
          coordinator: cluster.url,
          proxy: `http://127.0.0.1:${proxyPort}`,
          direct: cluster.workerUrls[0]!,
        };
        const workload = new Workload({ prefix: `r${round}-`, tenants: profile.tenants, repeatRate: profile.repeatRate });
        for (let k = 0; k < TARGETS.length; k++) {
          const target = TARGETS[(round + k) % TARGETS.length]!;
          const label = `ingest ${size}-item round ${round + 1}/${profile.rounds} ${target}`;
          results[target].push(await measureIngest(ctx, profile, label, urls[target], size, workload));
        }
      } finally {
        await proxy?.stop();
        await cluster?.cleanup();
      }
    }
    const summary = { coordinator: summarize(results.coordinator), proxy: summarize(results.proxy), direct: summarize(results.direct) };
    raw[`${size}-item`] = summary;
    const section = `1. POST /items, ${size}-item batches, c=${profile.connections}, ${profile.tenants.toLocaleString('en-US')} tenants, ${Math.round(profile.repeatRate * 100)}% repeats (4 workers, fsync; median of ${profile.rounds})`;
    for (const target of TARGETS) {
      const s = summary[target];
      const name = target === 'coordinator' ? 'coordinator' : target === 'proxy' ? 'minimal proxy' : 'direct to one worker';
      const throughputTarget = target !== 'coordinator' ? undefined
        : size === 100 ? { op: '>=' as const, value: 400_000 } : { op: '>=' as const, value: 7_700 };
      rows.push({ section, measure: `${name}: req/s`, value: s.reqPerSec, unit: 'req/s', ...(size === 1 && throughputTarget ? { target: throughputTarget } : {}) });
      rows.push({ section, measure: `${name}: items/s`, value: s.itemsPerSec, unit: 'items/s', ...(size === 100 && throughputTarget ? { target: throughputTarget } : {}) });
      rows.push({ section, measure: `${name}: latency p50`, value: s.p50, unit: 'ms' });
      rows.push({ section, measure: `${name}: latency p99`, value: s.p99, unit: 'ms' });
    }
    rows.push({
      section,
      measure: 'ratio coordinator / minimal proxy (throughput)',
      value: summary.coordinator.itemsPerSec / summary.proxy.itemsPerSec,
      unit: 'ratio',
      target: { op: '>=', value: 0.85 },
    });
    rows.push({
      section,
      measure: 'ratio coordinator / direct (throughput)',
      value: summary.coordinator.itemsPerSec / summary.direct.itemsPerSec,
      unit: 'ratio',
    });
  }
  return { rows, raw: { rounds: profile.rounds, loadSec: profile.loadSec, warmupSec: profile.warmupSec, workload: { tenants: profile.tenants, repeatRate: profile.repeatRate, connections: profile.connections }, cluster: '4 workers, durability fsync, worker_persist 5, fresh per round', results: raw } };
}
