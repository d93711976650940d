import type { Item } from '../shared/items.js';
import { addIdMap, encodeIdMap, type IdMap } from './store/id-map.js';

/** A write-ahead log record holding ids by tenant is kept below this size. */
const RECORD_BYTES = 1024 * 1024;

/**
 * Ids this worker acknowledged (they are in its write-ahead log) and has not yet handed
 * to the store, by tenant. Adding is a push onto the tenant's array: repeats are removed
 * where the ids are merged, so the hot path pays no hashing for them.
 */
export class Pending {
  #map: IdMap = new Map();
  #ids = 0;

  get ids(): number {
    return this.#ids;
  }

  get tenants(): number {
    return this.#map.size;
  }

  addItems(items: readonly Item[]): void {
    // Batches often hold runs of one tenant: look it up once per run.
    let tenant: string | undefined;
    let ids: string[] | undefined;
    const map = this.#map;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (item.tenant !== tenant) {
        tenant = item.tenant;
        ids = map.get(tenant);
        if (ids === undefined) {
          ids = [];
          map.set(tenant, ids);
        }
      }
      ids!.push(item.id);
    }
    this.#ids += items.length;
  }

  addMap(source: IdMap): void {
    addIdMap(this.#map, source);
    for (const ids of source.values()) this.#ids += ids.length;
  }

  /** Everything, leaving it empty. */
  take(): IdMap {
    const taken = this.#map;
    this.#map = new Map();
    this.#ids = 0;
    return taken;
  }

  /** The ids of these tenants, leaving the others. */
  takeTenants(tenants: Iterable<string>): IdMap {
    const taken: IdMap = new Map();
    for (const tenant of tenants) {
      const ids = this.#map.get(tenant);
      if (ids === undefined) continue;
      this.#map.delete(tenant);
      this.#ids -= ids.length;
      taken.set(tenant, ids);
    }
    return taken;
  }

  /** The tenants with pending ids. */
  tenantNames(): string[] {
    return [...this.#map.keys()];
  }

  has(tenant: string): boolean {
    return this.#map.has(tenant);
  }

  /** Write-ahead log records that hold every pending id. */
  toRecords(): Buffer[] {
    return encodeIdMap(this.#map, RECORD_BYTES).map((text) => Buffer.from(text, 'utf8'));
  }
}
