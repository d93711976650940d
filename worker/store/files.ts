import { mkdirSync } from 'node:fs';
import { DATA_DIR_MODE } from '../../shared/data-modes.js';
import { acquireLock } from '../../shared/locks.js';
import type { Logger } from '../../shared/log.js';
import { mapSettledLimit } from '../../shared/pool.js';
import { describeDiskError } from '../disk-error.js';
import { syncToDisk } from '../fsync.js';
import { HandoffClient } from './handoff.js';
import { idCount, type IdMap } from './id-map.js';
import { Merger } from './merger.js';
import { Ownership, type Member } from './ownership.js';
import { locksFolder, shardLockTarget } from './shards.js';
import type { PersistOptions, Store, StoreStatus } from './store.js';
import { TenantFiles } from './tenant-files.js';

/** fdatasyncs under way at once in a checkpoint (the worker's thread pool has 16 threads). */
const PARALLEL_SYNCS = 12;
/** Tenants this worker stopped owning are forgotten (their ids dropped from memory) after this long without a merge. */
const FORGET_AFTER_MS = 60_000;

export interface FileStoreOptions {
  readonly database: string;
  readonly workerId: string;
  readonly log: Logger;
  /** The cluster secret, for hand-overs to other workers. */
  readonly secret: () => string;
  /** Current `lock_stale`, ms: read at every lock, so a config change applies at once. */
  readonly lockStaleMs: () => number;
  /** Whether checkpoints fsync (durability: fsync); asked each time. */
  readonly sync: () => boolean;
  /** How long a hand-over to another worker may take before this worker writes the ids itself. */
  readonly handoffTimeoutMs: () => number;
}

/**
 * The store of record as per-tenant files in `database` (see tenant-file-format.ts),
 * appended under shard locks (proper-lockfile). Each shard has an owner among the live
 * workers (ownership.ts): a persist hands every tenant's ids to its owner, which merges
 * them into the file, so only the owner holds a tenant's ids in memory and no worker
 * reads back what the others wrote. When the owner cannot be reached, the worker merges
 * the ids itself — correct under the lock, only slower. Every worker answers counts from
 * the count at the end of each file.
 */
export class FileStore implements Store {
  readonly kind = 'files';
  readonly #options: FileStoreOptions;
  readonly #files: TenantFiles;
  readonly #merger: Merger;
  readonly #ownership: Ownership;
  readonly #handoff: HandoffClient;
  /** When each held tenant was last merged here, to forget the ones this worker no longer owns. */
  readonly #mergedAt = new Map<string, number>();
  #handoffs = { sent: 0, failed: 0 };

  constructor(options: FileStoreOptions) {
    this.#options = options;
    this.#files = new TenantFiles(options.database, options.log);
    this.#ownership = new Ownership(options.workerId);
    this.#handoff = new HandoffClient(options.secret);
    mkdirSync(locksFolder(options.database), { recursive: true, mode: DATA_DIR_MODE });
    this.#merger = new Merger({
      files: this.#files,
      database: options.database,
      log: options.log,
      lockShard: (shard, maxWaitMs) => acquireLock(shardLockTarget(options.database, shard), options.lockStaleMs(), { maxWaitMs }),
    });
  }

  /** The tenant files themselves (tests and the status route read through it). */
  get files(): TenantFiles {
    return this.#files;
  }

  async persist(map: IdMap, options: PersistOptions = {}): Promise<IdMap> {
    const failed: IdMap = new Map();
    if (map.size === 0) return failed;
    const local: IdMap = new Map();
    const remote = new Map<string, { member: Member; map: IdMap }>();
    for (const [tenant, ids] of map) {
      const owner = this.#ownership.ownerOf(tenant);
      if (owner === undefined) {
        local.set(tenant, ids);
        continue;
      }
      let group = remote.get(owner.url);
      if (group === undefined) {
        group = { member: owner, map: new Map() };
        remote.set(owner.url, group);
      }
      group.map.set(tenant, ids);
    }
    const work = [this.#mergeHere(local, options, failed)];
    for (const { member, map: theirs } of remote.values()) work.push(this.#handOver(member, theirs, options, failed));
    await Promise.all(work);
    return failed;
  }

  async #handOver(member: Member, map: IdMap, options: PersistOptions, failed: IdMap): Promise<void> {
    const timeout = this.#options.handoffTimeoutMs();
    const timeoutMs = options.stopBy === undefined ? timeout : Math.max(1, Math.min(timeout, options.stopBy - Date.now()));
    try {
      const answer = await this.#handoff.send(member.url, map, { visible: options.visible === true, timeoutMs });
      this.#handoffs.sent++;
      for (const tenant of answer.failed) {
        const ids = map.get(tenant);
        if (ids !== undefined) failed.set(tenant, ids);
      }
    } catch (err) {
      this.#handoffs.failed++;
      this.#options.log.warn(`handing ${idCount(map)} id(s) of ${map.size} tenant(s) to ${member.id} failed (${describeDiskError(err)}): writing them here instead`);
      await this.#mergeHere(map, options, failed);
    }
  }

  async #mergeHere(map: IdMap, options: PersistOptions, failed: IdMap): Promise<void> {
    if (map.size === 0) return;
    const outcome = await this.#merger.merge(map, options.stopBy);
    const now = Date.now();
    for (const tenant of map.keys()) this.#mergedAt.set(tenant, now);
    for (const [tenant, failure] of outcome.failed) failed.set(tenant, failure.ids);
    if (outcome.failed.size > 0) {
      const [tenant, first] = outcome.failed.entries().next().value!;
      const file = (first.error as { file?: string }).file ?? this.#files.pathOf(tenant);
      this.#options.log.error(`could not persist ${outcome.failed.size} of ${map.size} tenant(s) (first: ${file}: ${describeDiskError(first.error)}); their ids stay in the write-ahead log and are retried next round`, first.error);
    }
  }

  async checkpoint(): Promise<void> {
    const { files, folder } = this.#files.takeUnsynced();
    if (!this.#options.sync()) return;
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
        await syncToDisk(this.#options.database, 'folder');
      } catch (err) {
        folderFailed = true;
        failure ??= err;
      }
    }
    if (failure !== undefined) {
      this.#files.putBackUnsynced(unsynced, folderFailed);
      throw failure;
    }
    this.#forgetOld();
  }

  /** Drops from memory the tenants another worker owns now and this one has not merged for a while. */
  #forgetOld(): void {
    const cutoff = Date.now() - FORGET_AFTER_MS;
    const dropped = this.#files.forget((tenant) => this.#ownership.owns(tenant) || (this.#mergedAt.get(tenant) ?? 0) > cutoff);
    if (dropped > 0) {
      for (const tenant of this.#mergedAt.keys()) if (!this.#ownership.owns(tenant) && this.#mergedAt.get(tenant)! <= cutoff) this.#mergedAt.delete(tenant);
    }
  }

  async count(tenant: string): Promise<number> {
    return this.#files.count(tenant);
  }

  setMembers(members: readonly Member[]): void {
    this.#ownership.setMembers(members);
    const urls = new Set(members.map((member) => member.url));
    this.#handoff.close((url) => urls.has(url)).catch(() => {});
  }

  async repair(): Promise<void> {
    mkdirSync(locksFolder(this.#options.database), { recursive: true, mode: DATA_DIR_MODE });
    const vanished = this.#files.vanished();
    if (vanished.length === 0) return;
    this.#options.log.warn(`${vanished.length} tenant file(s) this worker writes were deleted or replaced: writing their ids back from memory`);
    const failed: IdMap = new Map();
    await this.#mergeHere(new Map(vanished.map((tenant) => [tenant, []])), {}, failed);
    if (failed.size > 0) throw new Error(`${failed.size} tenant file(s) could not be written back yet`);
  }

  status(): StoreStatus {
    const held = this.#files.held();
    return {
      kind: this.kind,
      heldTenants: held.tenants,
      heldIds: held.ids,
      members: this.#ownership.members.length,
      handoffsSent: this.#handoffs.sent,
      handoffsFailed: this.#handoffs.failed,
    };
  }

  async close(): Promise<void> {
    await this.#merger.idle();
    await this.#handoff.close();
  }
}
