import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    // The process tests run dist/: rebuild it first when it is older than its sources.
    globalSetup: ['test/helpers/fresh-build.ts'],
    // Integration tests start real clusters on a 2-core machine: one file at a time keeps
    // their timings (persist intervals, stale locks, health checks) meaningful.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each test file in its own child process: the cluster harness's 'exit' handler then
    // kills what a crashed file started, and process-wide state never leaks between files.
    pool: 'forks',
  },
});
