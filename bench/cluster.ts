import { startCluster, type Cluster } from '../test/helpers/cluster.js';

/**
 * A cluster to measure, from the one harness the tests use (test/helpers/cluster.ts):
 * the product's own timings rather than the tests' fast ones (only `config_check: 1`, so a
 * config edit applies quickly), `GET /` polled every 5 ms while it starts (its `startMs` is
 * the cold-start figure), and the temp folder kept when `BENCH_KEEP=1`. Temp folders are
 * removed when the run ends, not between sections: on ext4 without a journal (this VM's
 * disk), creating a file costs 20-50 µs normally but 300-900 µs of kernel time for about 5
 * minutes after many files were deleted (each recently deleted inode is looked at and
 * skipped), and a later section would measure the benchmark's own clean-up.
 */
export function startBenchCluster(workers: number, config: Record<string, unknown>): Promise<Cluster> {
  return startCluster({
    workers,
    config: { config_check: 1, ...config },
    fastTimings: false,
    readyPollMs: 5,
    keepDir: process.env.BENCH_KEEP === '1',
    removeDirAtExit: true,
  });
}
