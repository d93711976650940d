import { mkdirSync } from 'node:fs';
import { DATA_DIR_MODE } from '../../shared/data-modes.js';
import type { Logger } from '../../shared/log.js';
import { mapSettledLimit } from '../../shared/map-settled-limit.js';
import { describeError } from '../../shared/describe-error.js';
import { FileSystemSync, syncToDisk } from '../fsync.js';
import type { IdMap } from './id-map.js';
import type { MergeBackend } from './merge-backend.js';
import { Merger, type MergeOutcome } from './merger.js';
import { ShardLocks } from './shard-locks.js';
import { locksFolder, shardOf } from './shards.js';
import { TenantFiles } from './tenant-files.js';

/** fdatasyncs under way at once when each file is synced on its own. */
const PARALLEL_SYNCS = 12;
/** A checkpoint of more files than this syncs the whole file system at once instead of each file. */
const SYNCFS_ABOVE = 8;
/** Tenants of shards this worker no longer owns are forgotten (their ids dropped from memory) after this long without a merge. */
const FORGET_AFTER_MS = 60_000;

/** Merges in the calling thread: the tenant files, their shard locks, checkpoints. */
export class LocalMerges implements MergeBackend {
  readonly #database: string;
  readonly #log: Logger;
  readonly #files: TenantFiles;
  readonly #locks: ShardLocks;
  readonly #merger: Merger;
  #staleMs: number;
  #owned: ReadonlySet<number> | null = null;
  /** When each held tenant was last merged here. */
  readonly #mergedAt = new Map<string, number>();
  /** Syncs the whole file system at once (see FileSystemSync); undefined once that failed. */
  #syncfs: FileSystemSync | undefined;

  constructor(options: { database: string; log: Logger; staleMs: number }) {
    this.#database = options.database;
    this.#log = options.log;
    this.#staleMs = options.staleMs;
    this.#files = new TenantFiles(options.database, options.log);
    this.#syncfs = new FileSystemSync(options.database);
    mkdirSync(locksFolder(options.database), { recursive: true, mode: DATA_DIR_MODE });
    this.#locks = new ShardLocks({
      database: options.database,
      staleMs: () => this.#staleMs,
      onLost: (shard) => {
        // Another process took the shard over while we stalled (or the lock was deleted): what
        // we hold of it may be behind the file now, or the file gone. Read afresh, keep the ids.
        this.#log.warn(`the lock of shard ${shard} was taken over by another process; reading its tenants' files afresh`);
        this.#files.distrust((tenant) => shardOf(tenant) === shard);
      },
    });
    this.#merger = new Merger({ files: this.#files, locks: this.#locks, log: options.log });
  }

  async merge(map: IdMap, stopBy?: number): Promise<MergeOutcome> {
    const outcome = await this.#merger.merge(map, stopBy);
    const now = Date.now();
    for (const tenant of map.keys()) this.#mergedAt.set(tenant, now);
    return outcome;
  }

  own(shards: readonly number[] | null): void {
    this.#owned = shards === null ? null : new Set(shards);
    this.#locks.own(shards).catch((err: unknown) => this.#log.warn('could not let go of the locks of shards no longer owned', err));
  }

  setStaleMs(ms: number): void {
    this.#staleMs = ms;
  }

  setDeadline(at: number): void {
    this.#merger.setDeadline(at);
  }

  async repair(): Promise<number> {
    mkdirSync(locksFolder(this.#database), { recursive: true, mode: DATA_DIR_MODE });
    const vanished = this.#files.vanished();
    if (vanished.length === 0) return 0;
    this.#log.warn(`${vanished.length} tenant file(s) this worker writes were deleted or replaced: writing their ids back from memory`);
    const outcome = await this.merge(new Map(vanished.map((tenant) => [tenant, []])));
    if (outcome.failed.size > 0) throw new Error(`${outcome.failed.size} tenant file(s) could not be written back yet`);
    return vanished.length;
  }

  async checkpoint(sync: boolean): Promise<void> {
    const { files, folder } = this.#files.takeUnsynced();
    if (sync && (files.length > 0 || folder)) await this.#sync(files, folder);
    this.#forgetOld();
  }

  async #sync(files: string[], folder: boolean): Promise<void> {
    if (files.length > SYNCFS_ABOVE && this.#syncfs !== undefined) {
      try {
        await this.#syncfs.sync();
        return;
      } catch (err) {
        // No sh or coreutils `sync`, or it failed: one fsync per file then, from now on.
        this.#syncfs.close();
        this.#syncfs = undefined;
        this.#log.warn(`cannot sync the file system in one call (${describeError(err)}); fsyncing each tenant file instead`);
      }
    }
    const results = await mapSettledLimit(files, PARALLEL_SYNCS, (file) => syncToDisk(file, 'file'));
    const unsynced: string[] = [];
    let failure: unknown;
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        unsynced.push(files[i]!);
        failure ??= result.reason;
      }
    });
    let folderFailed = false;
    if (folder) {
      try {
        await syncToDisk(this.#database, 'folder');
      } catch (err) {
        folderFailed = true;
        failure ??= err;
      }
    }
    if (failure !== undefined) {
      this.#files.putBackUnsynced(unsynced, folderFailed);
      throw failure;
    }
  }

  /** Drops from memory the tenants another worker owns now and this one has not merged for a while. */
  #forgetOld(): void {
    const cutoff = Date.now() - FORGET_AFTER_MS;
    const keep = (tenant: string): boolean => this.#owned === null || this.#owned.has(shardOf(tenant)) || (this.#mergedAt.get(tenant) ?? 0) > cutoff;
    if (this.#files.forget(keep) === 0) return;
    for (const tenant of this.#mergedAt.keys()) if (!keep(tenant)) this.#mergedAt.delete(tenant);
  }

  held(): { tenants: number; ids: number } {
    return this.#files.held();
  }

  async close(): Promise<void> {
    await this.#merger.stop();
    this.#syncfs?.close();
    await this.#locks.releaseAll();
  }
}
