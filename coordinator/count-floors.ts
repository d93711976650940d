/**
 * The lowest count the coordinator may still answer for each tenant: the highest it has
 * answered. Workers read counts from the store, which only grows, but two reads racing
 * through different workers can come back in either order (and a worker may briefly lag:
 * a tenant file deleted by hand, a store being repaired); answering at least the floor
 * makes a tenant's count through the coordinator never go down from one answer to the next.
 *
 * Bounded: at most `max` tenants are remembered (plus those with a read under way), the
 * least recently asked forgotten first. Forgetting is safe because of how counts are read:
 * a tenant is forgotten only while no read of it is under way, so every read that
 * starts later reaches the store after every read whose answer raised the forgotten floor,
 * and the store, which only grows, gives it at least that count.
 */

/** One remembered tenant. */
export interface FloorEntry {
  /** The highest count answered. */
  floor: number;
  /** Reads under way: while any, the entry is never forgotten. */
  readers: number;
}

export class CountFloors {
  #max: number;
  /** Least recently asked first (a Map keeps insertion order; a read re-inserts). */
  readonly #entries = new Map<string, FloorEntry>();
  #forgotten = 0;

  /** @param max tenants remembered (`count_floor_tenants`); at least 1. */
  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /** Tenants remembered now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Tenants forgotten to stay within the bound, since the start. */
  get forgotten(): number {
    return this.#forgotten;
  }

  /** A new bound (`count_floor_tenants` changed): applies at once. */
  setMax(max: number): void {
    this.#max = Math.max(1, max);
    this.#trim();
  }

  /**
   * A read of `tenant` begins, before anything is asked of a worker: its entry is pinned
   * until `end()`. Every `begin` must be paired with exactly one `end`.
   */
  begin(tenant: string): FloorEntry {
    let entry = this.#entries.get(tenant);
    if (entry === undefined) {
      entry = { floor: 0, readers: 0 };
    } else {
      this.#entries.delete(tenant); // re-inserted below: now the most recently asked
    }
    this.#entries.set(tenant, entry);
    entry.readers++;
    return entry;
  }

  /** The count to answer for a read that got `count` from a worker: never below the floor, which it raises. */
  settle(entry: FloorEntry, count: number): number {
    if (count > entry.floor) entry.floor = count;
    return entry.floor;
  }

  /** The read is over (answered, failed or abandoned). */
  end(entry: FloorEntry): void {
    entry.readers--;
    if (this.#entries.size > this.#max) this.#trim();
  }

  /** The floor of `tenant`, or undefined when it is not remembered (for tests and status). */
  peek(tenant: string): number | undefined {
    return this.#entries.get(tenant)?.floor;
  }

  /** Forgets the least recently asked tenants with no read under way until within the bound. */
  #trim(): void {
    let excess = this.#entries.size - this.#max;
    if (excess <= 0) return;
    // Tenants being read were asked most recently, so they sit at the end: this loop
    // rarely steps over one.
    for (const [tenant, entry] of this.#entries) {
      if (excess <= 0) break;
      if (entry.readers > 0) continue;
      this.#entries.delete(tenant);
      this.#forgotten++;
      excess--;
    }
  }
}
