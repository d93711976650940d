import type { IdMap } from './id-map.js';
import type { MergeOutcome } from './merger.js';

/**
 * Where a worker writes tenant files: in its own thread (tests, benchmarks) or in a
 * worker thread of its own (a running worker; see threaded-merges.ts). Both keep the
 * ids of the tenants whose files they write, and the shard locks.
 */
export interface MergeBackend {
  /** Merges `map` into the tenant files; never rejects (failures are in the outcome). */
  merge(map: IdMap, stopBy?: number): Promise<MergeOutcome>;
  /** The shards this worker owns now (their locks are kept; the others' let go); null while no membership is known. */
  own(shards: readonly number[] | null): void;
  /** A new `lock_stale`, ms. */
  setStaleMs(ms: number): void;
  /** The worker is stopping: every merge, whenever it was asked for, gives up shards not written by `at` (epoch ms). */
  setDeadline(at: number): void;
  /** Writes back tenant files that were deleted or replaced under us; resolves with how many. */
  repair(): Promise<number>;
  /** Makes what was appended so far survive a power cut (when `sync`); rejects when it could not. */
  checkpoint(sync: boolean): Promise<void>;
  /** Tenants whose ids are held, and how many ids. */
  held(): { readonly tenants: number; readonly ids: number };
  /** Gives up merges not begun yet (their ids stay in the write-ahead log) and lets every lock go. */
  close(): Promise<void>;
}
