import { Pool } from 'undici';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from '../../test/helpers/cluster.js';
import { startBenchCluster } from '../cluster.js';
import { procStat } from '../../test/helpers/proc.js';
import { getJson } from '../http.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { Workload } from '../workload.js';

/**
 * Scale-out: the same fresh-id load (every id new, 100-item batches over 1,000 tenants,
 * 16 clients, through the coordinator, worker_persist 1 s) against 1, 2, 4 and 8
 * workers. Measured: items acknowledged per second of load, and the CPU the coordinator
 * and every worker spent (from /proc) from the start of the load until every worker has
 * nothing left to persist — per acknowledged item. Then every worker's count of every
 * tenant is checked against what was acknowledged.
 *
 * Each cluster first takes a warm-up load of the same kind, measured and reported
 * separately: a new process spends its first seconds compiling its hot code (V8's
 * optimising compiler runs on helper threads whose CPU /proc counts) and growing its heap,
 * once per process, so a cold figure grows with the number of processes without any cost
 * per item. The targets are about a running cluster: the warm load.
 */
export const BATCH = 100;
export const TENANTS = 1000;
export const CLIENTS = 16;

/** Posts fresh batches from `clients` lanes for `seconds`; every 200 is counted, nothing is cut off mid-request. */
export async function load(url: string, workload: Workload, seconds: number): Promise<{ acknowledged: number; failed: number; ms: number }> {
  const pool = new Pool(url, { connections: CLIENTS });
  let acknowledged = 0;
  let failed = 0;
  const started = performance.now();
  const end = started + seconds * 1000;
  const lane = async (): Promise<void> => {
    while (performance.now() < end) {
      const res = await pool.request({ method: 'POST', path: '/items', body: workload.batch(BATCH), headers: { 'content-type': 'application/json' } });
      await res.body.dump();
      if (res.statusCode === 200) acknowledged += BATCH;
      else failed += BATCH;
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, lane));
  const ms = performance.now() - started;
  await pool.close();
  return { acknowledged, failed, ms };
}

/** Seconds of the warm-up load before the measured one (see the top of this file). */
export function warmUpSeconds(profile: Profile): number {
  return profile.name === 'full' ? 5 : 1;
}

/** One measured load: its result, the CPU seconds of each of `pids` from its start until every worker settled, and how long settling took. */
export interface MeasuredLoad {
  readonly result: Awaited<ReturnType<typeof load>>;
  readonly cpu: number[];
  readonly settleMs: number;
}

/** Runs `load` and waits until every worker has nothing left to persist (at most 120 s), reading the CPU of `pids` around both. */
export async function measuredLoad(cluster: Cluster, pids: readonly number[], workload: Workload, seconds: number, label: string): Promise<MeasuredLoad> {
  const cpuSeconds = (pid: number): number => procStat(pid)?.cpuSeconds ?? 0;
  const cpuBefore = pids.map(cpuSeconds);
  const result = await load(cluster.url, workload, seconds);
  const loadEnd = performance.now();
  const deadline = Date.now() + 120_000;
  while (!(await settled(cluster))) {
    if (Date.now() > deadline) throw new Error(`${label}: still persisting 120 s after the load`);
    await sleep(20);
  }
  return { result, cpu: pids.map((pid, i) => cpuSeconds(pid) - cpuBefore[i]!), settleMs: performance.now() - loadEnd };
}

export async function settled(cluster: Cluster): Promise<boolean> {
  for (const url of cluster.workerUrls) {
    const status = await getJson(`${url}/`);
    if (status.body?.pending !== 0 || status.body?.persisting !== 0) return false;
  }
  return true;
}

/** Every worker's count of every tenant, summed per worker. */
export async function countsPerWorker(cluster: Cluster, tenants: number): Promise<number[]> {
  const sums: number[] = [];
  for (const url of cluster.workerUrls) {
    const pool = new Pool(url, { connections: 8 });
    let sum = 0;
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < tenants) {
        const tenant = `t${next++}`;
        const res = await pool.request({ method: 'GET', path: `/items/count?tenant=${tenant}` });
        const body = (await res.body.json()) as { count: number };
        sum += body.count;
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    await pool.close();
    sums.push(sum);
  }
  return sums;
}

/** One size's measured loads, summed over its passes. */
interface SizeTotals {
  acknowledged: number;
  ms: number;
  cpu: number;
  coordinatorCpu: number;
  warmAcknowledged: number;
  warmCpu: number;
  readonly passes: string[];
}

/**
 * The order the sizes are measured in. A full run measures each size twice, in mirrored
 * order (1, 2, 4, 8, 8, 4, 2, 1): this VM's speed drifts by up to 2x within an hour, and a
 * drift during the section would otherwise land on the 8/1 ratio as if the cluster had
 * caused it; in mirrored order a steady drift weighs on every size alike.
 */
function passOrder(sizes: readonly number[], full: boolean): number[] {
  return full ? [...sizes, ...[...sizes].reverse()] : [...sizes];
}

export async function scaleOutSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const rows: Row[] = [];
  const raw: Record<string, unknown>[] = [];
  const section = `7. Scale-out: fresh ids, ${BATCH}-item batches over ${TENANTS.toLocaleString('en-US')} tenants, ${CLIENTS} clients, worker_persist 1 s`;
  const sizes = process.env.BENCH_SIZES?.split(',').map(Number) ?? (profile.name === 'full' ? [1, 2, 4, 8] : [1, 2]);
  const seconds = profile.name === 'full' ? 10 : 1;
  const totals = new Map<number, SizeTotals>();
  const order = passOrder(sizes, profile.name === 'full');
  for (const [n, workers] of order.entries()) {
    const pass = order.slice(0, n).filter((size) => size === workers).length + 1;
    const cluster = await startBenchCluster(workers, { worker_persist: 1, durability: process.env.BENCH_DURABILITY ?? 'fsync' });
    try {
      const pids = [cluster.pid, ...(await cluster.workerPids())];
      const label = `${workers} worker(s)`;
      const workload = new Workload({ tenants: TENANTS, repeatRate: 0, prefix: `s${workers}p${pass}-` });
      const warm = await measuredLoad(cluster, pids, workload, warmUpSeconds(profile), `${label}, warm-up`);
      const { result, cpu, settleMs } = await measuredLoad(cluster, pids, workload, seconds, label);
      const acknowledged = warm.result.acknowledged + result.acknowledged;
      const total = cpu.reduce((a, b) => a + b, 0);
      const sums = await countsPerWorker(cluster, TENANTS);
      if (sums.some((sum) => sum !== acknowledged)) {
        ctx.problem(`scale-out, ${label}, pass ${pass}: counts per worker ${sums.join(', ')} but ${acknowledged} acknowledged`);
      }
      const itemsPerSec = result.acknowledged / (result.ms / 1000);
      const usPerItem = (total * 1e6) / result.acknowledged;
      const coordinatorUs = (cpu[0]! * 1e6) / result.acknowledged;
      const warmCpu = warm.cpu.reduce((a, b) => a + b, 0);
      const warmUsPerItem = (warmCpu * 1e6) / warm.result.acknowledged;
      const summary = `${Math.round(itemsPerSec).toLocaleString('en-US')} items/s, ${usPerItem.toFixed(1)} µs CPU/item (coordinator ${coordinatorUs.toFixed(1)}; warm-up ${warmUsPerItem.toFixed(1)})`;
      ctx.progress(`scale-out ${label}, pass ${pass}: ${summary}, settled ${settleMs.toFixed(0)} ms after the load; counts ${sums.every((s) => s === acknowledged) ? 'exact' : 'WRONG'}`);
      const size = totals.get(workers) ?? { acknowledged: 0, ms: 0, cpu: 0, coordinatorCpu: 0, warmAcknowledged: 0, warmCpu: 0, passes: [] };
      size.acknowledged += result.acknowledged;
      size.ms += result.ms;
      size.cpu += total;
      size.coordinatorCpu += cpu[0]!;
      size.warmAcknowledged += warm.result.acknowledged;
      size.warmCpu += warmCpu;
      size.passes.push(summary);
      totals.set(workers, size);
      raw.push({ workers, pass, ...result, settleMs, cpu, itemsPerSec, usPerItem, coordinatorUs, sums, warmUp: { ...warm.result, cpu: warm.cpu, settleMs: warm.settleMs, usPerItem: warmUsPerItem } });
    } finally {
      await cluster.cleanup();
    }
  }
  const perItem = new Map<number, number>();
  for (const workers of sizes) {
    const size = totals.get(workers)!;
    const label = `${workers} worker(s)`;
    perItem.set(workers, (size.cpu * 1e6) / size.acknowledged);
    if (size.passes.length > 1) ctx.progress(`scale-out ${label}, its ${size.passes.length} passes: ${size.passes.join('; ')}`);
    rows.push(
      { section, measure: `${label}: items/s`, value: size.acknowledged / (size.ms / 1000), unit: 'items/s', ...(workers === 4 ? { target: { op: '>=' as const, value: 200_000 } } : {}) },
      { section, measure: `${label}: CPU µs per item, all processes`, value: perItem.get(workers)!, unit: 'µs', ...(workers === 4 ? { target: { op: '<=' as const, value: 8 } } : {}) },
      { section, measure: `${label}: CPU µs per item, coordinator`, value: (size.coordinatorCpu * 1e6) / size.acknowledged, unit: 'µs', target: { op: '<=', value: 1 } },
      { section, measure: `${label}: CPU µs per item, all processes, first ${warmUpSeconds(profile)} s of a new cluster (warm-up)`, value: (size.warmCpu * 1e6) / size.warmAcknowledged, unit: 'µs' },
    );
  }
  const largest = sizes.at(-1)!;
  rows.push({ section, measure: `CPU per item, ${largest} workers / 1 worker`, value: perItem.get(largest)! / perItem.get(1)!, unit: 'ratio', target: { op: '<=', value: 2 } });
  return { rows, raw };
}
