import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { redisUnavailable, startRedis, type RedisServer } from '../../test/helpers/redis.js';
import { startBenchCluster } from '../cluster.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { Workload } from '../workload.js';
import { BATCH, CLIENTS, TENANTS, countsPerWorker, measuredLoad, warmUpSeconds } from './scale-out.js';

const run = promisify(execFile);

/**
 * The Redis store beside the files store: the scale-out load (fresh ids, 100-item batches
 * over 1,000 tenants, 16 clients, through the coordinator, worker_persist 1 s) against 1,
 * 2, 4 and 8 workers, once with `store: files` and once with `store: redis://...` (one
 * redis-server on this machine, AOF everysec, emptied before each run), in the same run.
 * Measured: items acknowledged per second of load, and the CPU of the coordinator, the
 * workers and redis-server from the start of the load until every worker has nothing left
 * to persist, per acknowledged item. Then redis-benchmark's SADD on the same redis-server:
 * the ceiling of the store itself.
 */

/** Members per SADD in the redis-benchmark run that compares with a worker's persist (which sends up to 1,000). */
const BENCH_MEMBERS = 100;

async function redisBenchmark(redis: RedisServer, args: string[]): Promise<number> {
  const { stdout } = await run('redis-benchmark', ['-h', redis.host, '-p', String(redis.port), '-q', ...args], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  // `-q` prints `SADD: 123456.78 requests per second, p50=...` (a custom command: its text before the colon).
  const match = /([\d.]+) requests per second/.exec(stdout.split('\r').at(-1) ?? stdout);
  if (match === null) throw new Error(`redis-benchmark printed no figure: ${stdout.slice(-300)}`);
  return Number(match[1]);
}

export async function redisStoreSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const section = `9. Redis store beside files store: fresh ids, ${BATCH}-item batches over ${TENANTS.toLocaleString('en-US')} tenants, ${CLIENTS} clients, worker_persist 1 s`;
  const missing = redisUnavailable();
  if (missing !== undefined) {
    ctx.problem(`redis store section skipped: ${missing}`);
    return { rows: [], raw: { skipped: missing } };
  }
  const rows: Row[] = [];
  const raw: Record<string, unknown>[] = [];
  const sizes = process.env.BENCH_SIZES?.split(',').map(Number) ?? (profile.name === 'full' ? [1, 2, 4, 8] : [1, 2]);
  const seconds = profile.name === 'full' ? 10 : 1;
  const redis = await startRedis({ appendfsync: 'everysec' });
  try {
    for (const workers of sizes) {
      for (const store of ['files', 'redis'] as const) {
        if (store === 'redis') await redis.cli('flushall');
        const cluster = await startBenchCluster(workers, { worker_persist: 1, durability: 'fsync', ...(store === 'redis' ? { store: redis.url } : {}) });
        try {
          const pids = [cluster.pid, ...(await cluster.workerPids()), ...(store === 'redis' && redis.pid !== undefined ? [redis.pid] : [])];
          const label = `${store}, ${workers} worker(s)`;
          const workload = new Workload({ tenants: TENANTS, repeatRate: 0, prefix: `r${workers}${store}-` });
          // Warm like section 7: the figures are a running cluster's, not its first seconds'.
          const warm = await measuredLoad(cluster, pids, workload, warmUpSeconds(profile), `${label}, warm-up`);
          const { result, cpu } = await measuredLoad(cluster, pids, workload, seconds, label);
          const acknowledged = warm.result.acknowledged + result.acknowledged;
          const total = cpu.reduce((a, b) => a + b, 0);
          const redisCpu = store === 'redis' ? cpu.at(-1)! : 0;
          const sums = await countsPerWorker(cluster, TENANTS);
          const exact = sums.every((sum) => sum === acknowledged);
          if (!exact) ctx.problem(`redis store section, ${label}: counts per worker ${sums.join(', ')} but ${acknowledged} acknowledged`);
          const itemsPerSec = result.acknowledged / (result.ms / 1000);
          const usPerItem = (total * 1e6) / result.acknowledged;
          ctx.progress(`${store} store, ${workers} worker(s): ${Math.round(itemsPerSec).toLocaleString('en-US')} items/s, ${usPerItem.toFixed(1)} µs CPU/item${store === 'redis' ? ` (redis-server ${((redisCpu * 1e6) / result.acknowledged).toFixed(2)})` : ''}; counts ${exact ? 'exact' : 'WRONG'}`);
          rows.push(
            { section, measure: `${workers} worker(s), ${store}: items/s`, value: itemsPerSec, unit: 'items/s' },
            { section, measure: `${workers} worker(s), ${store}: CPU µs per item, all processes${store === 'redis' ? ' (redis-server included)' : ''}`, value: usPerItem, unit: 'µs' },
          );
          if (store === 'redis') rows.push({ section, measure: `${workers} worker(s), redis: CPU µs per item, redis-server alone`, value: (redisCpu * 1e6) / result.acknowledged, unit: 'µs' });
          raw.push({ store, workers, ...result, cpu, itemsPerSec, usPerItem, redisCpu, sums });
        } finally {
          await cluster.cleanup();
        }
      }
    }
    // The ceiling: redis-server alone, driven by its own benchmark on the same machine.
    await redis.cli('flushall');
    const requests = profile.name === 'full' ? 2_000_000 : 100_000;
    const single = await redisBenchmark(redis, ['-t', 'sadd', '-n', String(requests), '-c', String(CLIENTS), '-P', '16', '-r', '100000000']);
    const members = Array.from({ length: BENCH_MEMBERS }, (_, i) => `m${i}:__rand_int__`);
    const multi = await redisBenchmark(redis, ['-n', String(Math.round(requests / 20)), '-c', String(CLIENTS), '-P', '4', '-r', '100000000', 'sadd', 'bench:{set}:__rand_int__', ...members]);
    ctx.progress(`redis-benchmark: SADD ${Math.round(single).toLocaleString('en-US')} commands/s (1 member, pipeline 16); ${Math.round(multi * BENCH_MEMBERS).toLocaleString('en-US')} members/s (${BENCH_MEMBERS} per SADD)`);
    rows.push(
      { section, measure: 'redis-benchmark SADD, 1 member, c=16, pipeline 16: commands/s', value: single, unit: 'req/s' },
      { section, measure: `redis-benchmark SADD, ${BENCH_MEMBERS} members per command, c=16, pipeline 4: members/s`, value: multi * BENCH_MEMBERS, unit: 'items/s', note: 'the store\'s own ceiling on this machine' },
    );
    raw.push({ redisBenchmark: { saddCommandsPerSec: single, saddMembersPerSec: multi * BENCH_MEMBERS, membersPerCommand: BENCH_MEMBERS } });
  } finally {
    await redis.cleanup();
  }
  return { rows, raw };
}
