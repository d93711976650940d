import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Logger } from '../../shared/log.js';
import { joinIdMaps, type IdMap } from './id-map.js';
import type { ShardLease, ShardLocks } from './shard-locks.js';
import { shardOf } from './shards.js';
import type { TenantFiles } from './tenant-files.js';

/** What a merge did: ids new to their files, and the tenants it could not write (with why). */
export interface MergeOutcome {
  readonly written: number;
  readonly failed: Map<string, { readonly ids: string[]; readonly error: unknown }>;
}

/**
 * One part's share of the outcome of a merge that joined several (`part`, one of its
 * maps): the failures of its own tenants, with its own ids. The ids written count once:
 * all of them to the first part (`first`), none to the others, so summed they stay true.
 */
function outcomeOf(whole: MergeOutcome, part: IdMap, first: boolean): MergeOutcome {
  const failed = new Map<string, { ids: string[]; error: unknown }>();
  if (whole.failed.size > 0) {
    for (const [tenant, ids] of part) {
      const failure = whole.failed.get(tenant);
      if (failure !== undefined) failed.set(tenant, { ids, error: failure.error });
    }
  }
  return { written: first ? whole.written : 0, failed };
}

/** Merges asked for separately and sent as one (their maps joined by joinIdMaps). */
export interface MergePart {
  readonly map: IdMap;
  readonly resolve: (outcome: MergeOutcome) => void;
}

/** Answers each part (in the order joined) with its share of `whole`; a part that went alone gets `whole` itself. */
export function shareOutcome(whole: MergeOutcome, parts: readonly MergePart[]): void {
  if (parts.length === 1) parts[0]!.resolve(whole);
  else parts.forEach((part, i) => part.resolve(outcomeOf(whole, part.map, i === 0)));
}

export interface MergerOptions {
  readonly files: TenantFiles;
  readonly locks: ShardLocks;
  readonly log: Logger;
}

interface Job extends MergePart {
  readonly stopBy: number | undefined;
}

/**
 * The event loop is handed back after this long of merging, so counts and batches keep
 * being answered while a round writes thousands of tenant files.
 */
export const SLICE_MS = 8;

/**
 * Shard locks waited for at once: a shard whose lock another worker holds (it owns the
 * shard, or died holding it) holds up only its own tenants, not the whole pass.
 */
export const LOCK_LANES = 16;

/** Gave up on a shard because the worker is stopping and its time is up; the ids stay in the write-ahead log. */
export class DeadlineError extends Error {
  override name = 'DeadlineError';
}

/**
 * Writes ids into tenant files, one shard at a time under that shard's lock. Merges asked
 * for while one runs wait and then go together (their ids joined per tenant), so a burst
 * of hand-overs from other workers costs one pass over the shards, not one each.
 */
export class Merger {
  readonly #options: MergerOptions;
  #queue: Job[] = [];
  #running: Promise<void> | undefined;
  /** Set by stop(): shards not begun yet are given up at once. */
  #stopped = false;
  /** Set by setDeadline(): epoch ms by which every merge, even one asked for before, gives up. */
  #deadline = Infinity;

  constructor(options: MergerOptions) {
    this.#options = options;
  }

  /**
   * Merges `map` into the tenant files; resolves (never rejects) once done. `stopBy`
   * (epoch ms) is when a stopping worker must let go: shards not begun by then are
   * reported failed with a DeadlineError.
   */
  merge(map: IdMap, stopBy?: number): Promise<MergeOutcome> {
    if (map.size === 0) return Promise.resolve({ written: 0, failed: new Map() });
    return new Promise((resolve) => {
      this.#queue.push({ map, stopBy, resolve });
      this.#running ??= this.#run();
    });
  }

  /**
   * The worker is stopping: merges under way or asked for later give up what is not
   * written by `at`, like a merge given that `stopBy` (a merge asked for before the stop
   * began has none, and could otherwise hold shard locks until the worker is SIGKILLed).
   */
  setDeadline(at: number): void {
    this.#deadline = Math.min(this.#deadline, at);
  }

  /** The worker is stopping now: shards not begun are given up (their ids stay in the write-ahead log); resolves once the one being written is done. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.idle();
  }

  /** Resolves once every merge asked for so far is done. */
  async idle(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #run(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const jobs = this.#queue;
        this.#queue = [];
        let stopBy: number | undefined;
        for (const job of jobs) if (job.stopBy !== undefined) stopBy = Math.min(stopBy ?? Infinity, job.stopBy);
        shareOutcome(await this.#mergeAll(joinIdMaps(jobs.map((job) => job.map)), stopBy), jobs);
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #mergeAll(map: IdMap, stopBy: number | undefined): Promise<MergeOutcome> {
    const { files, log } = this.#options;
    const byShard = new Map<number, string[]>();
    for (const tenant of map.keys()) {
      const shard = shardOf(tenant);
      const tenants = byShard.get(shard);
      if (tenants === undefined) byShard.set(shard, [tenant]);
      else tenants.push(tenant);
    }
    const failed = new Map<string, { ids: string[]; error: unknown }>();
    // One error for every tenant the deadline stops: a stop with a backlog of tens of
    // thousands of tenants spent 100-300 ms making one (with its stack) for each, past
    // the deadline it was meant to keep.
    let deadlineError: DeadlineError | undefined;
    const timeIsUp = (): DeadlineError => (deadlineError ??= new DeadlineError('the worker is stopping and its time to persist is up'));
    let written = 0;
    let sliceStart = performance.now();
    const shards = [...byShard];
    let next = 0;
    /** One lane: takes the next shard, waits for its lock, writes its tenants (synchronously, so no other lane interleaves). */
    const lane = async (): Promise<void> => {
      while (next < shards.length) {
        const [shard, tenants] = shards[next++]!;
        const fail = (error: unknown): void => {
          for (const tenant of tenants) failed.set(tenant, { ids: map.get(tenant)!, error });
        };
        const until = Math.min(stopBy ?? Infinity, this.#deadline);
        const remaining = until === Infinity ? undefined : until - Date.now();
        if (this.#stopped || (remaining !== undefined && remaining <= 0)) {
          fail(timeIsUp());
          continue;
        }
        let lease: ShardLease;
        try {
          lease = await this.#options.locks.lease(shard, remaining);
        } catch (err) {
          fail(err);
          continue;
        }
        try {
          for (const tenant of tenants) {
            // A stopping worker lets go on time even in the middle of a big shard.
            if (this.#stopped || Date.now() >= Math.min(stopBy ?? Infinity, this.#deadline)) {
              failed.set(tenant, { ids: map.get(tenant)!, error: timeIsUp() });
              continue;
            }
            try {
              written += files.mergeLocked(tenant, map.get(tenant)!);
            } catch (err) {
              failed.set(tenant, { ids: map.get(tenant)!, error: err });
            }
          }
          if (lease.compromised()) log.warn(`the lock of shard ${shard} was taken over while this worker appended; the files stay consistent (appends never overwrite)`);
        } finally {
          await lease.done();
        }
        if (performance.now() - sliceStart >= SLICE_MS) {
          await yieldToEventLoop();
          sliceStart = performance.now();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(LOCK_LANES, shards.length) }, lane));
    return { written, failed };
  }
}
