/**
 * How big and how long each measurement is. `full` is `make bench` (a few minutes);
 * `short` is `make bench-short`: the same code paths at toy sizes, so CI notices when
 * the harness rots (its figures mean nothing).
 */
export interface Profile {
  readonly name: 'full' | 'short';
  /** Length of one load measurement, and of the warm-up run before it, seconds. */
  readonly loadSec: number;
  readonly warmupSec: number;
  /** Alternating rounds (coordinator, proxy, direct) per batch size; the median is reported. */
  readonly rounds: number;
  /** Alternating rounds (fsync, write, off) per batch size. */
  readonly durabilityRounds: number;
  readonly connections: number;
  readonly tenants: number;
  readonly repeatRate: number;
  /** Count probe: requests per second, ingest warm-up before it and its length, seconds. */
  readonly countRate: number;
  readonly countWarmupSec: number;
  readonly countSec: number;
  /** Strong-read probe: requests per second (the same warm-up and length as the count probe). */
  readonly strongRate: number;
  /** Big tenant: ids already persisted, batch size to load them, new ids, in-process repeats. */
  readonly bigIds: number;
  readonly bigBatch: number;
  readonly bigNew: number;
  readonly inProcessRepeats: number;
  /** Convergence samples and the worker_persist they run with, seconds. */
  readonly convergenceSamples: number;
  readonly convergencePersistSec: number;
  /** Tenants of one id each for the many-tenants section, and for its million-tenant run (0: skip). */
  readonly manyTenants: number;
  readonly millionTenants: number;
  /** Cold starts (median reported), and the pending ids of the memory measurement. */
  readonly coldStarts: number;
  readonly memoryIds: number;
  readonly memoryBatch: number;
  /** How long the memory measurement watches a quiet worker's RSS (V8 gives back its garbage some 10-30 s after the load stops). */
  readonly memorySettleSec: number;
}

export const FULL: Profile = {
  name: 'full',
  loadSec: 5,
  warmupSec: 1,
  rounds: 3,
  durabilityRounds: 3,
  connections: 32,
  tenants: 1000,
  repeatRate: 0.2,
  countRate: 200,
  countWarmupSec: 2,
  // Three persist rounds (worker_persist 5), the first one after start included: with one
  // round in the window, the p99 moved 140-550 ms between back-to-back runs of one build.
  countSec: 15,
  strongRate: 50,
  bigIds: 1_000_000,
  bigBatch: 10_000,
  bigNew: 1000,
  inProcessRepeats: 5,
  convergenceSamples: 20,
  convergencePersistSec: 1,
  manyTenants: 100_000,
  millionTenants: 1_000_000,
  coldStarts: 3,
  memoryIds: 1_000_000,
  memoryBatch: 10_000,
  memorySettleSec: 45,
};

export const SHORT: Profile = {
  name: 'short',
  loadSec: 0.5,
  warmupSec: 0.2,
  rounds: 1,
  durabilityRounds: 1,
  connections: 32,
  tenants: 100,
  repeatRate: 0.2,
  countRate: 200,
  countWarmupSec: 0.3,
  countSec: 0.7,
  strongRate: 50,
  bigIds: 20_000,
  bigBatch: 2_000,
  bigNew: 1000,
  inProcessRepeats: 3,
  convergenceSamples: 3,
  convergencePersistSec: 1,
  manyTenants: 2_000,
  millionTenants: 0,
  coldStarts: 1,
  memoryIds: 20_000,
  memoryBatch: 2_000,
  memorySettleSec: 2,
};
