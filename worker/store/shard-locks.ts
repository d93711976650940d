import { mkdirSync } from 'node:fs';
import { DATA_DIR_MODE } from '../../shared/data-modes.js';
import { acquireLock, type Lock } from '../../shared/locks.js';
import { locksFolder, shardLockTarget } from './shards.js';

/** A shard lock for one merge pass: `done()` lets it go unless the shard is held for good. */
export interface ShardLease {
  readonly compromised: () => boolean;
  done(): Promise<void>;
}

export interface ShardLocksOptions {
  readonly database: string;
  /** `lock_stale` now, ms: every process must use the same value (see shared/locks.ts). */
  readonly staleMs: () => number;
  /** Told when a held lock was taken over by another process (this worker stalled past the stale time). */
  readonly onLost: (shard: number) => void;
}

/**
 * The proper-lockfile locks of the shards (see shards.ts). A worker keeps the locks of the
 * shards it owns for as long as it owns them — taking and dropping a lock costs a mkdir and
 * an rmdir, and a metadata change waits for the file system's journal, which the
 * write-ahead log's fsyncs keep busy — and takes any other shard's lock only for one pass
 * (when its owner could not be reached). proper-lockfile refreshes a held lock in the
 * background; if its holder dies, the lock goes stale and the next owner takes it over.
 */
export class ShardLocks {
  readonly #options: ShardLocksOptions;
  readonly #held = new Map<number, Lock>();
  /** The shards this worker owns; null while it knows no membership (then it may write any shard, waiting its turn). */
  #owned: ReadonlySet<number> | null = null;

  constructor(options: ShardLocksOptions) {
    this.#options = options;
  }

  /** How many shard locks are held now. */
  get held(): number {
    return this.#held.size;
  }

  /** The shards this worker owns now (null: no membership known): locks of the others are let go. */
  async own(shards: Iterable<number> | null): Promise<void> {
    const owned = shards === null ? null : new Set(shards);
    this.#owned = owned;
    const letGo = [...this.#held.keys()].filter((shard) => owned === null || !owned.has(shard));
    await Promise.all(letGo.map((shard) => this.#release(shard)));
  }

  /** The lock of `shard` for one pass, waiting at most `maxWaitMs` for it. */
  async lease(shard: number, maxWaitMs: number | undefined): Promise<ShardLease> {
    const held = this.#held.get(shard);
    if (held !== undefined && !held.compromised()) return { compromised: held.compromised, done: async () => {} };
    if (held !== undefined) this.#held.delete(shard);
    // Another live worker keeps the lock of a shard it owns: waiting for it would only wait
    // out the stale time. Try once; the ids are retried shortly (or handed over by then).
    // A stopping worker retries too, after a pause: an owner stopping beside it lets its
    // locks go when it exits, after it stopped taking hand-overs. Waiting here instead
    // would hold locks being taken when a slow stop is SIGKILLed at kill_timeout.
    const foreign = this.#owned !== null && !this.#owned.has(shard);
    const lock = await this.#acquire(shard, foreign ? 0 : maxWaitMs);
    if (this.#owned?.has(shard) === true) {
      this.#held.set(shard, lock);
      return { compromised: lock.compromised, done: async () => {} };
    }
    return { compromised: lock.compromised, done: () => lock.release() };
  }

  async #acquire(shard: number, maxWaitMs: number | undefined): Promise<Lock> {
    const { database, staleMs, onLost } = this.#options;
    const take = (): Promise<Lock> => acquireLock(shardLockTarget(database, shard), staleMs(), {
      maxWaitMs,
      onCompromised: () => {
        this.#held.delete(shard);
        onLost(shard);
      },
    });
    try {
      return await take();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The lock folder (or the whole database) was deleted: make it again, once.
      mkdirSync(locksFolder(database), { recursive: true, mode: DATA_DIR_MODE });
      return take();
    }
  }

  async #release(shard: number): Promise<void> {
    const lock = this.#held.get(shard);
    this.#held.delete(shard);
    await lock?.release();
  }

  /** Lets every lock go (the worker is stopping). */
  async releaseAll(): Promise<void> {
    this.#owned = new Set();
    await Promise.all([...this.#held.keys()].map((shard) => this.#release(shard)));
  }
}
