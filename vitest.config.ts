import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    // The process tests run dist/: rebuild it first when it is older than its sources.
    globalSetup: ['test/helpers/fresh-build.ts'],
    // Two files at a time, one per core of the 2-core machine the suite is made for: every
    // timed assertion has a slow-machine factor (test/helpers/slow-machine.ts), and the
    // suite passes with two clusters sharing the cores (~5 min instead of ~8 one by one).
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each test file in its own child process: the cluster harness's 'exit' handler then
    // kills what a crashed file started, and process-wide state never leaks between files.
    pool: 'forks',
  },
});
