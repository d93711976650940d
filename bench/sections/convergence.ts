import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/helpers/cluster.js';
import { startBenchCluster } from '../cluster.js';
import { countOf, postItems } from '../http.js';
import type { Profile } from '../profile.js';
import type { Context, SectionResult } from '../result.js';
import { max, median } from '../stats.js';

/**
 * (4) Convergence: from the 200 of a POST through the coordinator until every worker
 * counts the item. A fresh tenant each time, posted at a random moment (so the persist
 * phase is random too); all workers are then polled directly every ~5 ms. 4 workers,
 * worker_persist `convergencePersistSec`; the margin is convergence − worker_persist.
 */
export async function convergenceSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const persistSec = profile.convergencePersistSec;
  let cluster: Cluster | undefined;
  try {
    cluster = await startBenchCluster(4, { worker_persist: persistSec, durability: 'fsync' });
    const samples: number[] = [];
    for (let i = 0; i < profile.convergenceSamples; i++) {
      await sleep(Math.random() * persistSec * 1000);
      const tenant = `conv-${i}-${Math.random().toString(36).slice(2, 8)}`;
      const posted = await postItems(cluster.url, JSON.stringify([{ id: 'x', tenant }]), 1);
      const seenAt = new Map<string, number>();
      const deadline = Date.now() + persistSec * 1000 + 30_000;
      while (seenAt.size < cluster.workerUrls.length) {
        if (Date.now() > deadline) throw new Error(`sample ${i}: only ${seenAt.size} of ${cluster.workerUrls.length} workers counted the item 30 s after worker_persist`);
        const round = performance.now();
        await Promise.all(cluster.workerUrls.filter((url) => !seenAt.has(url)).map(async (url) => {
          const { count, answer } = await countOf(url, tenant);
          if (count === 1) seenAt.set(url, answer.doneAt);
          else if (count !== 0) throw new Error(`sample ${i}: ${url} counts ${count} for a tenant with one item`);
        }));
        const wait = 5 - (performance.now() - round);
        if (wait > 0) await sleep(wait);
      }
      samples.push(Math.max(...seenAt.values()) - posted.doneAt);
    }
    const med = median(samples);
    const worst = max(samples);
    ctx.progress(`convergence (worker_persist ${persistSec} s): ${samples.map((s) => s.toFixed(0)).join(', ')} ms`);
    const section = `4. Convergence, 200 → every worker counts it (worker_persist ${persistSec} s, ${samples.length} samples)`;
    return {
      rows: [
        { section, measure: 'convergence median', value: med, unit: 'ms' },
        { section, measure: 'convergence max', value: worst, unit: 'ms' },
        { section, measure: 'margin over worker_persist, median', value: med - persistSec * 1000, unit: 'ms' },
        { section, measure: 'margin over worker_persist, max', value: worst - persistSec * 1000, unit: 'ms' },
      ],
      raw: { workerPersistSec: persistSec, workers: 4, samplesMs: samples },
    };
  } finally {
    await cluster?.cleanup();
  }
}
