/**
 * Ids by tenant: what a persist round, a hand-over to another worker and a re-logged
 * write-ahead log record carry. Serialised as a JSON object `{"tenant": ["id", ...]}`
 * (written by hand, so a tenant named `__proto__` is a key like any other).
 */
export type IdMap = Map<string, string[]>;

/** Adds `source`'s ids to `target` (arrays are concatenated; duplicates are removed where they are merged). */
export function addIdMap(target: IdMap, source: IdMap): void {
  for (const [tenant, ids] of source) {
    const existing = target.get(tenant);
    if (existing === undefined) target.set(tenant, ids.slice());
    else for (const id of ids) existing.push(id);
  }
}

export function idCount(map: IdMap): number {
  let n = 0;
  for (const ids of map.values()) n += ids.length;
  return n;
}

/**
 * The map as JSON objects of at most about `maxBytes` each (a tenant with more ids is
 * split across objects), so no request or log line gets too big. Tenants without ids
 * are left out.
 */
export function encodeIdMap(map: IdMap, maxBytes = Number.POSITIVE_INFINITY): string[] {
  const chunks: string[] = [];
  let parts: string[] = [];
  let bytes = 2;
  const flush = (): void => {
    if (parts.length === 0) return;
    chunks.push(`{${parts.join(',')}}`);
    parts = [];
    bytes = 2;
  };
  for (const [tenant, ids] of map) {
    if (ids.length === 0) continue;
    const key = JSON.stringify(tenant);
    let from = 0;
    while (from < ids.length) {
      // Take ids while they fit; at least one, whatever its size.
      let to = from;
      let size = key.length + 3;
      while (to < ids.length) {
        const next = ids[to]!.length + 3;
        if (to > from && bytes + size + next > maxBytes) break;
        size += next;
        to++;
      }
      if (parts.length > 0 && bytes + size > maxBytes) flush();
      parts.push(`${key}:${JSON.stringify(from === 0 && to === ids.length ? ids : ids.slice(from, to))}`);
      bytes += size + 1;
      from = to;
      if (from < ids.length) flush();
    }
  }
  flush();
  return chunks;
}

/** A parsed `{"tenant": ["id", ...]}` object → IdMap; throws a TypeError naming what is wrong. */
export function decodeIdMap(value: unknown): IdMap {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new TypeError('expected an object of tenant → array of ids');
  const map: IdMap = new Map();
  for (const [tenant, ids] of Object.entries(value)) {
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw new TypeError(`the ids of tenant ${JSON.stringify(tenant.slice(0, 80))} are not an array of strings`);
    map.set(tenant, ids as string[]);
  }
  return map;
}

/**
 * The map `encodeIdMap` cut into `chunks`, put back together: a tenant split across
 * chunks gets all its ids back, in order.
 */
export function decodeIdMapChunks(chunks: readonly string[]): IdMap {
  const map: IdMap = new Map();
  for (const chunk of chunks) addIdMap(map, decodeIdMap(JSON.parse(chunk)));
  return map;
}
