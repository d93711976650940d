import { startCluster, type Cluster } from '../test/helpers/cluster.js';

/**
 * A cluster to measure, from the one harness the tests use (test/helpers/cluster.ts):
 * the product's own timings rather than the tests' fast ones (only `config_check: 1`, so a
 * config edit applies quickly), `GET /` polled every 5 ms while it starts (its `startMs` is
 * the cold-start figure), and the temp folder kept when `BENCH_KEEP=1`.
 */
export function startBenchCluster(workers: number, config: Record<string, unknown>): Promise<Cluster> {
  return startCluster({
    workers,
    config: { config_check: 1, ...config },
    fastTimings: false,
    readyPollMs: 5,
    keepDir: process.env.BENCH_KEEP === '1',
  });
}
