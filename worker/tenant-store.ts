import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Item } from '../shared/items.js';
import { tenantFilePath } from '../shared/tenant-file.js';
import { withLock } from '../shared/locks.js';
import type { Logger } from '../shared/log.js';
import { mapSettledLimit } from '../shared/map-settled-limit.js';
import { syncToDisk } from './fsync.js';
import { EMPTY_POSITION, appendIds, hasNewBytes, readTail } from './tenant-log.js';

/** fdatasyncs under way at once at the end of a round (the thread pool has 16 threads). */
const PARALLEL_SYNCS = 12;

/**
 * One tenant as this worker sees it. `known` holds every id it counts: the tenant file's
 * (as read so far) and its own acknowledged ones; the count is its size. `pending` is
 * the subset the file does not have yet, to be appended at the next persist. An id
 * never leaves `known`, so the count never goes down. (One set for the count, not two
 * disjoint ones, halves the hash-table work per new id: the hot path of ingestion.)
 */
class Tenant {
  readonly name: string;
  readonly file: string;
  readonly known = new Set<string>();
  pending = new Set<string>();
  ino = EMPTY_POSITION.ino;
  offset = EMPTY_POSITION.offset;
  size = 0;
  /** Reads of the file run one after another (they move ino/offset). */
  #reads: Promise<void> = Promise.resolve();
  /** Resolves once the file has been read in full the first time. */
  readonly loaded: Promise<void>;

  constructor(name: string, file: string, log: Logger) {
    this.name = name;
    this.file = file;
    this.loaded = this.catchUp(log);
  }

  /**
   * Takes in whatever the file gained since the last read (one stat when nothing did).
   * Serialised per tenant. A failed read is logged and retried at the next call; it
   * never rejects, so a broken disk makes counts stale, not wrong.
   */
  catchUp(log: Logger): Promise<void> {
    const run = async (): Promise<void> => {
      try {
        if (!hasNewBytes(this.file, this)) return;
        const tail = await readTail(this.file, this);
        const { known, pending } = this;
        for (const id of tail.ids) {
          known.add(id);
          pending.delete(id);
        }
        this.ino = tail.ino;
        this.offset = tail.offset;
        this.size = tail.size;
        if (tail.badLines > 0) log.warn(`tenant file ${this.file}: skipped ${tail.badLines} torn line(s) (their ids are rewritten by the worker that wrote them)`);
      } catch (err) {
        log.error(`cannot read tenant file ${this.file}; the count may lag until it is readable`, err);
      }
    };
    this.#reads = this.#reads.then(run);
    return this.#reads;
  }

  /** After our own append at [start, end): when we had read the file right up to `start`, skip our line instead of reading it back. */
  appended(at: { ino: number; start: number; end: number }): Promise<void> {
    this.#reads = this.#reads.then(() => {
      if ((this.ino === at.ino || (this.ino === 0 && at.start === 0)) && this.size === at.start) {
        this.ino = at.ino;
        this.offset = at.end;
        this.size = at.end;
      }
    });
    return this.#reads;
  }
}

export interface StoreOptions {
  readonly database: string;
  readonly log: Logger;
  /** Stale time of tenant locks, ms. */
  readonly lockStaleMs: number;
  /** Whether tenant appends must be fsynced (durability: fsync); asked each time, it can change at run time. */
  readonly sync: () => boolean;
}

/**
 * The worker's in-memory view of every tenant it has touched: dedupe, counts, and the
 * locked append of pending ids to the tenant files.
 */
export class TenantStore {
  readonly #tenants = new Map<string, Tenant>();
  readonly #options: StoreOptions;
  /** Tenant files appended to since the last syncWritten(), and whether one of them is new. */
  #unsynced = new Set<string>();
  #folderUnsynced = false;

  constructor(options: StoreOptions) {
    this.#options = options;
  }

  #tenant(name: string): Tenant {
    let tenant = this.#tenants.get(name);
    if (tenant === undefined) {
      tenant = new Tenant(name, tenantFilePath(this.#options.database, name), this.#options.log);
      this.#tenants.set(name, tenant);
    }
    return tenant;
  }

  /**
   * The (tenant, id) pairs of a validated batch this worker does not count yet, flattened
   * as [tenant0, id0, tenant1, id1, ...]: what the write-ahead log must keep before they
   * may be counted. Changes nothing.
   */
  unseen(items: readonly Item[]): string[] {
    const pairs: string[] = [];
    // Batches often hold runs of one tenant: look it up once per run.
    let name: string | undefined;
    let known: Set<string> | undefined;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (item.tenant !== name) {
        name = item.tenant;
        known = this.#tenants.get(name)?.known;
      }
      if (known === undefined || !known.has(item.id)) pairs.push(name, item.id);
    }
    return pairs;
  }

  /**
   * Counts flattened pairs — a batch just made durable in the write-ahead log, or one
   * recovered from a log. Only durable pairs are ever counted, so a refused batch leaves
   * no trace and the count never has to go back down. Returns how many were new.
   */
  addPairs(pairs: readonly string[]): number {
    let added = 0;
    let name: string | undefined;
    let tenant: Tenant | undefined;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      if (pairs[i] !== name) {
        name = pairs[i]!;
        tenant = this.#tenant(name);
      }
      const { known } = tenant!;
      const before = known.size;
      const id = pairs[i + 1]!;
      known.add(id);
      if (known.size !== before) {
        tenant!.pending.add(id);
        added++;
      }
    }
    return added;
  }

  /** Distinct ids of the tenant: its file (read up to now) ∪ this worker's pending ids. */
  async count(name: string): Promise<number> {
    let tenant = this.#tenants.get(name);
    if (tenant === undefined) {
      // Asking about a tenant nobody wrote must not cost memory: a flood of random names would add up.
      const file = tenantFilePath(this.#options.database, name);
      const exists = existsSync(file); // synchronous: microseconds, no wait behind fsyncs in the thread pool
      tenant = this.#tenants.get(name);
      if (tenant === undefined) {
        if (!exists) return 0;
        tenant = this.#tenant(name);
      }
    }
    await tenant.loaded;
    await tenant.catchUp(this.#options.log);
    return tenant.known.size;
  }

  /**
   * With durability fsync: fdatasyncs every tenant file appended to since the last call
   * (and the folder, when a file was created), many at once so the file system can share
   * journal commits between them. Until it succeeds the write-ahead log keeps the ids, so
   * a failure here loses nothing: the files stay on the list for the next call.
   */
  async syncWritten(): Promise<void> {
    const files = [...this.#unsynced];
    const folder = this.#folderUnsynced;
    this.#unsynced = new Set();
    this.#folderUnsynced = false;
    if (!this.#options.sync()) return;
    const results = await mapSettledLimit(files, PARALLEL_SYNCS, (file) => syncToDisk(file, 'file'));
    let failure: unknown;
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        this.#unsynced.add(files[i]!);
        failure ??= result.reason;
      }
    });
    if (folder) {
      try {
        await syncToDisk(this.#options.database, 'folder');
      } catch (err) {
        this.#folderUnsynced = true;
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** Recreates the database folder if someone deleted it (else every lock would wait out its retries). */
  async ensureFolder(): Promise<void> {
    await mkdir(this.#options.database, { recursive: true });
  }

  /** Tenants with ids not yet in their file. */
  dirtyTenants(): string[] {
    const names: string[] = [];
    for (const [name, tenant] of this.#tenants) if (tenant.pending.size > 0) names.push(name);
    return names;
  }

  /** How many ids wait for a persist, over all tenants. */
  pendingIds(): number {
    let total = 0;
    for (const tenant of this.#tenants.values()) total += tenant.pending.size;
    return total;
  }

  tenantCount(): number {
    return this.#tenants.size;
  }

  /**
   * Appends the tenant's pending ids to its file under the tenant lock: first read what
   * other workers appended (ids already there are not written again), then one append.
   * Resolves with the number of ids written. Ids arriving meanwhile stay pending.
   */
  async persist(name: string): Promise<number> {
    const tenant = this.#tenant(name);
    await tenant.loaded;
    const { log, lockStaleMs } = this.#options;
    return withLock(tenant.file, lockStaleMs, async (lock) => {
      // What other workers appended is not written again.
      await tenant.catchUp(log);
      const batch = tenant.pending;
      if (batch.size === 0) return 0;
      // Ids arriving from now on go to a fresh set; this one is put back if the append fails.
      tenant.pending = new Set();
      let at;
      try {
        at = await appendIds(tenant.file, name, [...batch], { terminateTorn: tenant.size > tenant.offset });
      } catch (err) {
        for (const id of batch) tenant.pending.add(id);
        throw err;
      }
      this.#unsynced.add(tenant.file);
      if (at.created) this.#folderUnsynced = true;
      if (lock.compromised()) {
        // Appends never overwrite, so a lost lock cannot corrupt the file; at worst another writer
        // repeated some ids. Our line may not sit where we think: read the file again next time.
        log.warn(`lock of ${tenant.file} was taken over while we appended; the file is still consistent`);
      } else {
        await tenant.appended(at);
      }
      return batch.size;
    });
  }
}
