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
 * (5) Cold start: spawning `node dist/coordinator/main.js --config` until `GET /` lists
 * all 4 workers 'up' (polled every 5 ms), on a fresh folder each time; median reported.
 * Memory: VmRSS of one worker (a 1-worker cluster, worker_persist 3600 so nothing is
 * persisted) idle, and after `memoryIds` distinct ids (1,000 tenants) were posted
 * straight to it in `memoryBatch`-item batches.
 */
export async function coldStartSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const starts: number[] = [];
  for (let i = 0; i < profile.coldStarts; i++) {
    const cluster = await startBenchCluster(4, { worker_persist: 5 });
    starts.push(cluster.startMs!);
    await cluster.cleanup();
  }
  ctx.progress(`cold start of 4 workers: ${starts.map((s) => s.toFixed(0)).join(', ')} ms`);

  let cluster: Cluster | undefined;
  let memory: { idle: number; loaded: number; pid: number; postSeconds: number };
  try {
    cluster = await startBenchCluster(1, { worker_persist: 3600 });
    const [worker] = (await cluster.status()).workers;
    const pid = worker?.pid;
    if (typeof pid !== 'number') throw new Error('GET / does not give the worker pid');
    const url = cluster.workerUrls[0]!;
    await sleep(500);
    const idle = rssBytes(pid);
    const started = performance.now();
    const batches = distinctBatches((i) => `t${i % 1000}`, 'm', profile.memoryIds, profile.memoryBatch);
    for (const batch of batches) await postItems(url, batch.body, batch.items);
    const postSeconds = (performance.now() - started) / 1000;
    const health = await getJson(`${url}/`);
    if (health.body?.pending !== profile.memoryIds) {
      ctx.problem(`memory: the worker reports ${String(health.body?.pending)} pending ids, expected ${profile.memoryIds}`);
    }
    await sleep(500);
    memory = { idle, loaded: rssBytes(pid), pid, postSeconds };
  } finally {
    await cluster?.cleanup();
  }
  const mib = (bytes: number): number => bytes / 1024 / 1024;
  ctx.progress(`worker RSS: idle ${mib(memory.idle).toFixed(1)} MiB, with ${profile.memoryIds.toLocaleString('en-US')} pending ids ${mib(memory.loaded).toFixed(1)} MiB`);
  const section = '5. Cold start and memory';
  const rows: Row[] = [
    { section, measure: `cold start, 4 workers up (median of ${starts.length})`, value: median(starts) / 1000, unit: 's', target: { op: '<=', value: 1.5 } },
    { section, measure: 'worker RSS, idle', value: mib(memory.idle), unit: 'MiB' },
    { section, measure: `worker RSS, ${profile.memoryIds.toLocaleString('en-US')} pending ids (1,000 tenants)`, value: mib(memory.loaded), unit: 'MiB' },
    { section, measure: 'worker RSS growth per pending id', value: (memory.loaded - memory.idle) / profile.memoryIds, unit: 'B' },
  ];
  return { rows, raw: { coldStartsMs: starts, memory: { ...memory, ids: profile.memoryIds, tenants: 1000 } } };
}
