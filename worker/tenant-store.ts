import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Item } from '../shared/items.js';
import { tenantFilePath } from '../shared/tenant-file.js';
import { withLock } from '../shared/locks.js';
import type { Logger } from '../shared/log.js';
import { EMPTY_POSITION, appendIds, hasNewBytes, readTail } from './tenant-log.js';

/**
 * One tenant as this worker sees it. `persisted` mirrors the tenant file; `pending` holds
 * ids acknowledged here that the file does not have yet. The two never overlap, so the
 * count is the sum of their sizes. Ids only ever move from pending to persisted and
 * neither set loses an id: the count never goes down.
 */
class Tenant {
  readonly name: string;
  readonly file: string;
  readonly persisted = new Set<string>();
  readonly pending = new Set<string>();
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
    this.loaded = this.catchUp(log, true);
  }

  /**
   * Takes in whatever the file gained since the last read. Serialised per tenant. A
   * failed read is logged and retried at the next call; it never rejects, so a broken
   * disk makes counts stale, not wrong.
   */
  catchUp(log: Logger, force = false): Promise<void> {
    const run = async (): Promise<void> => {
      try {
        if (!force && !hasNewBytes(this.file, this)) return;
        const tail = await readTail(this.file, this);
        for (const id of tail.ids) {
          this.persisted.add(id);
          this.pending.delete(id);
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

  /**
   * After our own append of `ids` at [start, end): take them in and, when we had read the
   * file right up to `start`, move past our line instead of reading it back later.
   */
  appended(ids: readonly string[], at: { ino: number; start: number; end: number }): Promise<void> {
    for (const id of ids) {
      this.persisted.add(id);
      this.pending.delete(id);
    }
    this.#reads = this.#reads.then(() => {
      if ((this.ino === at.ino || (this.ino === 0 && at.start === 0)) && this.size === at.start) {
        this.ino = at.ino;
        this.offset = at.end;
        this.size = at.end;
      }
    });
    return this.#reads;
  }

  get count(): number {
    return this.persisted.size + this.pending.size;
  }
}

export interface StoreOptions {
  readonly database: string;
  readonly log: Logger;
  /** Stale time of tenant locks, ms. */
  readonly lockStaleMs: number;
  /** Whether to fsync each tenant append (durability: fsync); asked each time, it can change at run time. */
  readonly sync: () => boolean;
}

/** Result of adding a batch: the (tenant, id) pairs this worker had not seen, flattened. */
export interface AddResult {
  readonly fresh: string[];
}

/**
 * The worker's in-memory view of every tenant it has touched: dedupe, counts, and the
 * locked append of pending ids to the tenant files.
 */
export class TenantStore {
  readonly #tenants = new Map<string, Tenant>();
  readonly #options: StoreOptions;

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
   * Records a validated batch in memory (synchronously, so the caller can log exactly
   * what is new before it answers). Returns the pairs not seen before as
   * [tenant0, id0, tenant1, id1, ...] — what the write-ahead log must keep.
   */
  add(items: readonly Item[]): AddResult {
    const fresh: string[] = [];
    for (let i = 0; i < items.length; i++) {
      const { tenant: name, id } = items[i]!;
      const tenant = this.#tenant(name);
      if (tenant.persisted.has(id) || tenant.pending.has(id)) continue;
      tenant.pending.add(id);
      fresh.push(name, id);
    }
    return { fresh };
  }

  /** Adds flattened pairs (from a write-ahead log being recovered). */
  addPairs(pairs: readonly string[]): number {
    let added = 0;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const tenant = this.#tenant(pairs[i]!);
      const id = pairs[i + 1]!;
      if (tenant.persisted.has(id) || tenant.pending.has(id)) continue;
      tenant.pending.add(id);
      added++;
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
    return tenant.count;
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
    const { log, lockStaleMs, sync, database } = this.#options;
    // Someone may have deleted the folder while we run: recreate it rather than wait on a lock that cannot be made.
    await mkdir(database, { recursive: true });
    return withLock(tenant.file, lockStaleMs, async (lock) => {
      await tenant.catchUp(log, true);
      if (tenant.pending.size === 0) return 0;
      const ids = [...tenant.pending];
      // The ids stay pending until the append succeeded: a failed write loses nothing.
      const at = await appendIds(tenant.file, name, ids, { terminateTorn: tenant.size > tenant.offset, sync: sync() });
      if (lock.compromised()) {
        // Appends never overwrite, so a lost lock cannot corrupt the file; at worst another writer repeated
        // some ids. Our line may not sit where we think: take the ids in, but read the file again.
        log.warn(`lock of ${tenant.file} was taken over while we appended; the file is still consistent`);
        await tenant.appended(ids, { ino: -1, start: -1, end: -1 });
      } else {
        await tenant.appended(ids, at);
      }
      return ids.length;
    });
  }
}
