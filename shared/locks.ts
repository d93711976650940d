import path from 'node:path';
import lockfile from 'proper-lockfile';

/**
 * The folder of the shard locks, inside the database (its name starts with a dot, so no
 * tenant file can take it). Here, not beside the shards, because the coordinator clears
 * it after a clean stop (see coordinator/left-locks.ts).
 */
export function locksFolder(database: string): string {
  return path.join(database, '.locks');
}

/** proper-lockfile's lock of `target`: a folder named `<target>.lock`. */
export const LOCK_SUFFIX = '.lock';

/** What a lock holder can ask while it works. */
export interface HeldLock {
  /** True once another process took the lock over (we were too slow to refresh it). */
  readonly compromised: () => boolean;
}

/** Thrown when the lock could not be had within the wait (a live holder kept it). */
export class LockBusyError extends Error {
  override name = 'LockBusyError';
}

/** Waits between tries for a busy lock: 5 ms, growing by half each time, at most 200 ms. */
const RETRY_BACKOFF = { factor: 1.5, minTimeout: 5, maxTimeout: 200 } as const;

/**
 * How many retries of RETRY_BACKOFF fit in `maxWaitMs`: a caller with a deadline (a
 * stopping worker) must have given up by then, not one long backoff later.
 */
export function retriesWithin(maxWaitMs: number): number {
  const { factor, minTimeout, maxTimeout } = RETRY_BACKOFF;
  let waited = 0;
  let retries = 0;
  for (let wait = minTimeout; waited + Math.min(wait, maxTimeout) <= maxWaitMs; wait *= factor) {
    waited += Math.min(wait, maxTimeout);
    retries++;
  }
  return retries;
}

/**
 * The one place lock options are set, so every process uses the same `stale` and
 * `update` (proper-lockfile requires that). `realpath: false` lets us lock a tenant file
 * that does not exist yet. We wait about twice the stale time: long enough to take over a
 * lock whose holder was SIGKILLed, short enough that one stuck tenant does not stall a persist round.
 */
function lockOptions(staleMs: number, maxWaitMs: number, onCompromised: (err: Error) => void): lockfile.LockOptions {
  return {
    stale: staleMs,
    update: Math.floor(staleMs / 2),
    realpath: false,
    retries: { retries: retriesWithin(maxWaitMs), ...RETRY_BACKOFF },
    // The default handler throws from a timer and kills the process; ours only records it.
    onCompromised,
  };
}

/** A lock we hold: release it exactly once (never rejects). */
export interface Lock extends HeldLock {
  readonly release: () => Promise<void>;
}

/**
 * Takes the lock of `file`. With `wait: false` it fails at once (LockBusyError) unless
 * the lock is free or stale; `maxWaitMs` caps the wait below its default (twice the stale
 * time); `onCompromised` is told when another process takes the lock over (we failed
 * to refresh it in time). Prefer `withLock`; this is for locks held across steps.
 */
export async function acquireLock(file: string, staleMs: number, options: { wait?: boolean; maxWaitMs?: number; onCompromised?: () => void } = {}): Promise<Lock> {
  let compromised = false;
  const lockOpts = lockOptions(staleMs, Math.min(options.maxWaitMs ?? Infinity, 2 * staleMs), () => {
    compromised = true;
    options.onCompromised?.();
  });
  if (options.wait === false || (options.maxWaitMs !== undefined && options.maxWaitMs <= 0)) lockOpts.retries = 0;
  try {
    const release = await lockfile.lock(file, lockOpts);
    // Releasing a compromised lock rejects: the lock is someone else's now, nothing to undo.
    return { compromised: () => compromised, release: () => release().catch(() => {}) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new LockBusyError(`${file} is locked by another process`, { cause: err });
    }
    throw err;
  }
}

/**
 * Runs `work` while holding the cross-process lock of `file` (`<file>.lock`), and
 * releases it afterwards whatever happens. A compromised lock never throws from a timer.
 */
export async function withLock<T>(file: string, staleMs: number, work: (lock: HeldLock) => Promise<T>): Promise<T> {
  const lock = await acquireLock(file, staleMs);
  try {
    return await work(lock);
  } finally {
    await lock.release();
  }
}
