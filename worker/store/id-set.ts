import { randomInt } from 'node:crypto';

/**
 * Ids up to this many are kept in a plain array (searched in full): most tenants of a
 * cluster with very many tenants hold a handful of ids, and a small array costs less
 * than the two buffers of the compact form.
 */
const SMALL = 8;
/** The table grows when it would be fuller than this: linear probing stays short (about 2 probes to find an id, 6 to miss one). */
const MAX_LOAD = 0.7;
const FIRST_SLOTS = 32;
/** An id's bytes are stored behind their length, 7 bits per byte (LEB128): one byte below 128 bytes, three for the longest id a config allows. */
const MAX_PREFIX = 3;

/** What a set in the small form points at (shared: a million one-id tenants allocate no buffers). */
const NO_BYTES = Buffer.alloc(0);
const NO_SLOTS = new Uint32Array(0);
const NO_IDS: readonly string[] = [];

/**
 * Hash seed drawn per process: ids come from clients, and a fixed hash would let one craft
 * ids that all land in the same slots (every add would then walk the whole table).
 */
const SEED = randomInt(2 ** 31);

/** A seeded FNV-1a over `bytes[start, end)`, finished with murmur3's mixer so close ids ("m100", "m101") land far apart. */
function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5 ^ SEED;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A set of ids (well-formed strings, as items and tenant files hold them) that costs a
 * few tens of bytes per id instead of the ~100 a `Set<string>` takes once its strings and
 * the heap's slack are counted: every id's UTF-8 bytes go one after another into one
 * buffer (`#bytes`, each behind its length), and an open-addressing table of offsets into
 * it (`#slots`, linear probing) finds them. Nothing is ever removed, except by `truncate`
 * (undoing the last adds when their write failed).
 */
export class IdSet {
  /** The small form (see SMALL; never changed in place, so it can be handed out); undefined once compact. */
  #small: readonly string[] | undefined = NO_IDS;
  #bytes: Buffer = NO_BYTES;
  /** Bytes of `#bytes` in use; what follows is free (and scratch space for a lookup). */
  #used = 0;
  /** 0: empty; otherwise the offset of an id's length prefix in `#bytes`, plus one. */
  #slots = NO_SLOTS;
  /** Ids in the compact form. */
  #size = 0;

  get size(): number {
    return this.#small?.length ?? this.#size;
  }

  /** Adds `id`; returns whether it was new. */
  add(id: string): boolean {
    const small = this.#small;
    if (small !== undefined) {
      if (small.includes(id)) return false;
      if (small.length < SMALL) {
        // A new array of exactly the new length: push (or a spread) reserves room for 16
        // more, ~150 B per tenant that a million one-id tenants would pay.
        this.#small = small.concat(id);
        return true;
      }
      this.#compact(small);
    }
    return this.#addCompact(id);
  }

  has(id: string): boolean {
    if (this.#small !== undefined) return this.#small.includes(id);
    const start = this.#used + MAX_PREFIX;
    const end = this.#writeScratch(id);
    return this.#find(start, end, hashBytes(this.#bytes, start, end)) >= 0;
  }

  /** Undoes the adds made since the set had `size` ids (they must be the latest: a write that failed). */
  truncate(size: number): void {
    if (size >= this.size) return;
    if (this.#small !== undefined) {
      this.#small = this.#small.slice(0, size);
      return;
    }
    // Ids sit in `#bytes` in the order they were added: keep the first `size`, re-index them.
    let offset = 0;
    for (let i = 0; i < size; i++) offset = this.#endOf(offset);
    this.#used = offset;
    this.#size = size;
    this.#rebuild(this.#slots.length);
  }

  *[Symbol.iterator](): IterableIterator<string> {
    if (this.#small !== undefined) {
      yield* this.#small;
      return;
    }
    const used = this.#used;
    for (let offset = 0; offset < used; offset = this.#endOf(offset)) {
      const n = this.#lengthAt(offset);
      const start = offset + prefixLength(n);
      yield this.#bytes.toString('utf8', start, start + n);
    }
  }

  #compact(small: readonly string[]): void {
    this.#small = undefined;
    this.#bytes = Buffer.allocUnsafeSlow(256);
    this.#slots = new Uint32Array(FIRST_SLOTS);
    for (const id of small) this.#addCompact(id);
  }

  #addCompact(id: string): boolean {
    const start = this.#used + MAX_PREFIX;
    const end = this.#writeScratch(id);
    const hash = hashBytes(this.#bytes, start, end);
    const slot = this.#find(start, end, hash);
    if (slot >= 0) return false;
    // Not there: the scratch copy becomes the stored one, behind its length.
    const offset = this.#used;
    this.#used = offset + prefixLength(end - start) + (end - start);
    this.#writePrefix(offset, end - start, start);
    this.#slots[~slot] = offset + 1;
    this.#size++;
    if (this.#size > this.#slots.length * MAX_LOAD) this.#rebuild(this.#slots.length * 2);
    return true;
  }

  /**
   * Writes `id`'s bytes into the free space after the stored ids, leaving room for the
   * longest length prefix before them, so a new id is stored without being encoded twice.
   */
  #writeScratch(id: string): number {
    const room = MAX_PREFIX + id.length * 3;
    if (this.#used + room > this.#bytes.length) this.#grow(this.#used + room);
    const start = this.#used + MAX_PREFIX;
    const bytes = this.#bytes;
    // ASCII (most ids) is copied here: cheaper than a call into Buffer.write for short ids.
    const n = id.length;
    for (let i = 0; i < n; i++) {
      const code = id.charCodeAt(i);
      if (code >= 0x80) return start + bytes.write(id, start, 'utf8');
      bytes[start + i] = code;
    }
    return start + n;
  }

  /** Stores the length `n` at `offset` and moves the id's bytes (at `from`) right behind it. */
  #writePrefix(offset: number, n: number, from: number): void {
    const bytes = this.#bytes;
    let at = offset;
    let rest = n;
    while (rest >= 0x80) {
      bytes[at++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    bytes[at++] = rest;
    if (at !== from) bytes.copyWithin(at, from, from + n);
  }

  /** The byte length of the id stored at `offset` (its bytes start `prefixLength` of it later). */
  #lengthAt(offset: number): number {
    const bytes = this.#bytes;
    let b = bytes[offset]!;
    if (b < 0x80) return b;
    let n = b & 0x7f;
    b = bytes[offset + 1]!;
    n |= (b & 0x7f) << 7;
    if (b < 0x80) return n;
    return n | (bytes[offset + 2]! << 14);
  }

  /** Where the id stored after the one at `offset` begins. */
  #endOf(offset: number): number {
    const n = this.#lengthAt(offset);
    return offset + prefixLength(n) + n;
  }

  /** The slot holding the id whose bytes are `#bytes[start, end)`, or `~slot` of the empty slot where it would go. */
  #find(start: number, end: number, hash: number): number {
    const slots = this.#slots;
    const bytes = this.#bytes;
    const mask = slots.length - 1;
    const n = end - start;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = slots[slot]!;
      if (entry === 0) return ~slot;
      const offset = entry - 1;
      if (this.#lengthAt(offset) !== n) continue;
      const stored = offset + prefixLength(n);
      let i = 0;
      while (i < n && bytes[stored + i] === bytes[start + i]) i++;
      if (i === n) return slot;
    }
  }

  #grow(needed: number): void {
    const grown = Buffer.allocUnsafeSlow(Math.max(needed, Math.ceil(this.#bytes.length * 1.5)));
    this.#bytes.copy(grown, 0, 0, this.#used);
    this.#bytes = grown;
  }

  /** Re-indexes every stored id into a table of `capacity` slots. */
  #rebuild(capacity: number): void {
    const slots = new Uint32Array(capacity);
    const mask = capacity - 1;
    const used = this.#used;
    for (let offset = 0; offset < used; offset = this.#endOf(offset)) {
      const n = this.#lengthAt(offset);
      const start = offset + prefixLength(n);
      let slot = hashBytes(this.#bytes, start, start + n) & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = offset + 1;
    }
    this.#slots = slots;
  }
}

function prefixLength(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : 3;
}
