import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/helpers/cluster.js';
import { rssBytes } from '../../test/helpers/proc.js';
import { startBenchCluster } from '../cluster.js';
import { getJson, postItems } from '../http.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { median } from '../stats.js';
import { distinctBatches } from '../workload.js';

/**
 * RSS of the one worker of a 1-worker cluster, idle, then after `memoryIds` distinct ids
 * (1,000 tenants) were posted straight to it: `pending` with worker_persist 3600 and
 * worker_publish 0 (nothing persisted: the ids wait in memory), `held` with worker_persist 1 once everything is
 * persisted (the worker owns every tenant and keeps their ids to dedupe new ones).
 * `loaded` is read 1 s after that; `settled` is the lowest reading while the worker then
 * stays quiet for `memorySettleSec`: right after a load, RSS still holds the garbage of
 * parsing a million items, which V8 gives back only once it sees the worker idle.
 */
async function memoryOf(ctx: Context, profile: Profile, kind: 'pending' | 'held'): Promise<{ idle: number; loaded: number; settled: number; postSeconds: number }> {
  let cluster: Cluster | undefined;
  try {
    cluster = await startBenchCluster(1, kind === 'pending' ? { worker_persist: 3600, worker_publish: 0 } : { worker_persist: 1 });
    const [pid] = await cluster.workerPids();
    if (typeof pid !== 'number') throw new Error('GET / does not give the worker pid');
    const url = cluster.workerUrls[0]!;
    await sleep(500);
    const idle = rssBytes(pid);
    const started = performance.now();
    const batches = distinctBatches((i) => `t${i % 1000}`, 'm', profile.memoryIds, profile.memoryBatch);
    for (const batch of batches) await postItems(url, batch.body, batch.items);
    const postSeconds = (performance.now() - started) / 1000;
    const expected = kind === 'pending' ? profile.memoryIds : 0;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const health = await getJson(`${url}/`);
      if (health.body?.pending === expected && (kind === 'pending' || health.body?.persisting === 0)) break;
      if (Date.now() > deadline) {
        ctx.problem(`memory (${kind}): the worker reports ${String(health.body?.pending)} pending ids, expected ${expected}`);
        break;
      }
      await sleep(100);
    }
    await sleep(1000);
    const loaded = rssBytes(pid);
    let settled = loaded;
    for (let waited = 0; waited < profile.memorySettleSec; waited++) {
      await sleep(1000);
      settled = Math.min(settled, rssBytes(pid));
    }
    return { idle, loaded, settled, postSeconds };
  } finally {
    await cluster?.cleanup();
  }
}

/**
 * (5) Cold start: spawning `node dist/coordinator/main.js --config` until `GET /` lists
 * all 4 workers 'up' (polled every 5 ms), on a fresh folder each time; median reported.
 * Memory: see memoryOf.
 */
export async function coldStartSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const starts: number[] = [];
  for (let i = 0; i < profile.coldStarts; i++) {
    const cluster = await startBenchCluster(4, { worker_persist: 5 });
    starts.push(cluster.startMs!);
    await cluster.cleanup();
  }
  ctx.progress(`cold start of 4 workers: ${starts.map((s) => s.toFixed(0)).join(', ')} ms`);

  const memory = {
    pending: await memoryOf(ctx, profile, 'pending'),
    held: await memoryOf(ctx, profile, 'held'),
  };
  const mib = (bytes: number): number => bytes / 1024 / 1024;
  ctx.progress(`worker RSS: idle ${mib(memory.held.idle).toFixed(1)} MiB; ${profile.memoryIds.toLocaleString('en-US')} ids pending ${mib(memory.pending.loaded).toFixed(1)} MiB (${mib(memory.pending.settled).toFixed(1)} MiB quiet); the same ids persisted and held by their owner ${mib(memory.held.loaded).toFixed(1)} MiB (${mib(memory.held.settled).toFixed(1)} MiB quiet)`);
  const section = '5. Cold start and memory';
  const ids = profile.memoryIds.toLocaleString('en-US');
  const rows: Row[] = [
    { section, measure: `cold start, 4 workers up (median of ${starts.length})`, value: median(starts) / 1000, unit: 's', target: { op: '<=', value: 1.5 } },
    { section, measure: 'worker RSS, idle', value: mib(memory.held.idle), unit: 'MiB' },
    { section, measure: `worker RSS, ${ids} ids held by their owner (1,000 tenants), quiet`, value: mib(memory.held.settled), unit: 'MiB' },
    { section, measure: `worker RSS growth per held id, quiet ${profile.memorySettleSec} s (the owner keeps its tenants' ids)`, value: (memory.held.settled - memory.held.idle) / profile.memoryIds, unit: 'B', target: { op: '<=', value: 100 } },
    { section, measure: 'worker RSS growth per held id, 1 s after the last persist', value: (memory.held.loaded - memory.held.idle) / profile.memoryIds, unit: 'B' },
    { section, measure: `worker RSS growth per pending id (until the next persist), quiet ${profile.memorySettleSec} s`, value: (memory.pending.settled - memory.pending.idle) / profile.memoryIds, unit: 'B' },
  ];
  return { rows, raw: { coldStartsMs: starts, memory: { ...memory, ids: profile.memoryIds, tenants: 1000 } } };
}
