import type { Cluster } from '../../test/helpers/cluster.js';
import { waitFor } from '../../test/helpers/wait.js';
import { startBenchCluster } from '../cluster.js';
import { getJson, type Answer } from '../http.js';
import type { LoadResult } from '../load.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { Workload } from '../workload.js';
import { measureIngest } from './ingest-run.js';
import { BATCH_SIZES, summarize } from './ingest.js';

/**
 * (6) The cost of durable acknowledgement: the coordinator measurement of (1) with
 * durability fsync, write and off, alternated within each round (rotating which goes
 * first). Each round is a fresh 4-worker cluster; the mode is switched by rewriting its
 * config file (durability is applied at run time) and waiting until every worker's
 * `GET /` reports the new mode.
 */
const MODES = ['fsync', 'write', 'off'] as const;
type Mode = (typeof MODES)[number];

async function switchTo(cluster: Cluster, mode: Mode): Promise<void> {
  cluster.writeConfig({ worker_persist: 5, durability: mode });
  let answers: Array<Answer | undefined> = [];
  await waitFor(async () => {
    answers = await Promise.all(cluster.workerUrls.map((url) => getJson(`${url}/`).catch(() => undefined)));
    return answers.every((a) => a?.status === 200 && a.body?.durability === mode);
  }, 20_000, `durability ${mode} in force on every worker`).catch((err: unknown) => {
    throw new Error(`${(err as Error).message} (workers report ${JSON.stringify(answers.map((a) => a?.body?.durability))})`);
  });
}

export async function durabilitySection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  for (const size of BATCH_SIZES) {
    const results: Record<Mode, LoadResult[]> = { fsync: [], write: [], off: [] };
    for (let round = 0; round < profile.durabilityRounds; round++) {
      const cluster = await startBenchCluster(4, { worker_persist: 5, durability: 'fsync' });
      try {
        const workload = new Workload({ prefix: `d${round}-`, tenants: profile.tenants, repeatRate: profile.repeatRate });
        for (let k = 0; k < MODES.length; k++) {
          const mode = MODES[(round + k) % MODES.length]!;
          const switchStart = performance.now();
          await switchTo(cluster, mode);
          ctx.progress(`durability ${mode} in force on every worker ${(performance.now() - switchStart).toFixed(0)} ms after the config change`);
          const label = `durability ${size}-item round ${round + 1}/${profile.durabilityRounds} ${mode}`;
          results[mode].push(await measureIngest(ctx, profile, label, cluster.url, size, workload));
        }
      } finally {
        await cluster.cleanup();
      }
    }
    const summary = { fsync: summarize(results.fsync), write: summarize(results.write), off: summarize(results.off) };
    raw[`${size}-item`] = summary;
    const section = `6. Durable acknowledgement: coordinator, ${size}-item batches, c=${profile.connections} (median of ${profile.durabilityRounds})`;
    const unit = size === 1 ? 'req/s' : 'items/s';
    for (const mode of MODES) {
      const s = summary[mode];
      rows.push({ section, measure: `durability ${mode}: ${unit}`, value: size === 1 ? s.reqPerSec : s.itemsPerSec, unit });
      rows.push({ section, measure: `durability ${mode}: latency p50`, value: s.p50, unit: 'ms' });
      rows.push({ section, measure: `durability ${mode}: latency p99`, value: s.p99, unit: 'ms' });
    }
    rows.push({ section, measure: 'ratio fsync / write (throughput)', value: summary.fsync.itemsPerSec / summary.write.itemsPerSec, unit: 'ratio' });
    rows.push({ section, measure: 'ratio fsync / off (throughput)', value: summary.fsync.itemsPerSec / summary.off.itemsPerSec, unit: 'ratio' });
  }
  return { rows, raw: { rounds: profile.durabilityRounds, cluster: '4 workers, worker_persist 5, fresh per round; mode switched live', results: raw } };
}
