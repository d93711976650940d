export { COMPACT_ID_MAP_TYPE } from '../../shared/id-map-type.js';

/**
 * Ids by tenant: what a persist round, a hand-over to another worker and a re-logged
 * write-ahead log record carry. Serialised as a JSON object `{"tenant": ["id", ...]}`
 * (written by hand, so a tenant named `__proto__` is a key like any other) in the log,
 * and in a compact form between the processes and threads of a cluster.
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

/** Several maps as one: the map itself when there is only one (the merges only read the ids), else a new map joining them. */
export function joinIdMaps(maps: readonly IdMap[]): IdMap {
  if (maps.length === 1) return maps[0]!;
  const joined: IdMap = new Map();
  for (const map of maps) addIdMap(joined, map);
  return joined;
}

export function idCount(map: IdMap): number {
  let n = 0;
  for (const ids of map.values()) n += ids.length;
  return n;
}

/**
 * The map as JSON objects of at most about `maxBytes` each (a tenant with more ids is
 * split across objects), so no request or log line gets too big. Tenants without ids
 * are left out. This is the form of write-ahead log records; between the processes of
 * one cluster the compact form below goes instead.
 */
export function encodeIdMap(map: IdMap, maxBytes = Number.POSITIVE_INFINITY): string[] {
  return cutIdMap(map, maxBytes, JSON_FORM);
}

/**
 * The separators of the compact form: control characters, which no id and no tenant can
 * hold (a batch holding one has been refused since the first version).
 */
const TENANT_END = '\u001e';
const ID_START = '\u001f';

/**
 * The map as text of the form `tenant␟id␟id␞tenant␟id…` (␟ U+001F, ␞ U+001E), cut into
 * chunks of at most about `maxBytes` like `encodeIdMap`. For what one process of a
 * cluster hands another (a hand-over, the merge thread's work): decoding it is two
 * `split`s, where JSON.parse would put every id shorter than 10 characters into V8's
 * string table, which is slower and grows with every new id until the next full GC.
 */
export function encodeIdMapCompact(map: IdMap, maxBytes = Number.POSITIVE_INFINITY): string[] {
  return cutIdMap(map, maxBytes, COMPACT_FORM);
}

/** How one of the two forms writes a tenant's ids and joins tenants into a chunk. */
interface IdMapForm {
  /** The tenant as written. */
  key(tenant: string): string;
  /** What each id adds to a chunk besides its characters (quotes, a separator). */
  readonly bytesPerId: number;
  part(key: string, ids: readonly string[]): string;
  chunk(parts: readonly string[]): string;
}

const JSON_FORM: IdMapForm = {
  key: (tenant) => JSON.stringify(tenant),
  bytesPerId: 3,
  part: (key, ids) => `${key}:${JSON.stringify(ids)}`,
  chunk: (parts) => `{${parts.join(',')}}`,
};

const COMPACT_FORM: IdMapForm = {
  key: (tenant) => tenant,
  bytesPerId: 1,
  part: (key, ids) => `${key}${ID_START}${ids.join(ID_START)}`,
  chunk: (parts) => parts.join(TENANT_END),
};

function cutIdMap(map: IdMap, maxBytes: number, form: IdMapForm): string[] {
  const chunks: string[] = [];
  let parts: string[] = [];
  let bytes = 2;
  const flush = (): void => {
    if (parts.length === 0) return;
    chunks.push(form.chunk(parts));
    parts = [];
    bytes = 2;
  };
  for (const [tenant, ids] of map) {
    if (ids.length === 0) continue;
    const key = form.key(tenant);
    let from = 0;
    while (from < ids.length) {
      // Take ids while they fit; at least one, whatever its size.
      let to = from;
      let size = key.length + 3;
      while (to < ids.length) {
        const next = ids[to]!.length + form.bytesPerId;
        if (to > from && bytes + size + next > maxBytes) break;
        size += next;
        to++;
      }
      if (parts.length > 0 && bytes + size > maxBytes) flush();
      parts.push(form.part(key, from === 0 && to === ids.length ? ids : ids.slice(from, to)));
      bytes += size + 1;
      from = to;
      if (from < ids.length) flush();
    }
  }
  flush();
  return chunks;
}

/** One chunk of the compact form → IdMap; throws a TypeError naming what is wrong. */
export function decodeIdMapCompact(text: string): IdMap {
  const map: IdMap = new Map();
  if (text === '') return map;
  for (const part of text.split(TENANT_END)) {
    const ids = part.split(ID_START);
    const tenant = ids.shift()!;
    if (tenant === '' || ids.length === 0 || ids.includes('')) throw new TypeError('expected tenants, each followed by its ids, separated by U+001F and U+001E');
    const existing = map.get(tenant);
    if (existing === undefined) map.set(tenant, ids);
    else for (const id of ids) existing.push(id);
  }
  return map;
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
 * The map `encodeIdMapCompact` cut into `chunks`, put back together: a tenant split
 * across chunks gets all its ids back, in order.
 */
export function decodeIdMapChunks(chunks: readonly string[]): IdMap {
  const map: IdMap = new Map();
  for (const chunk of chunks) addIdMap(map, decodeIdMapCompact(chunk));
  return map;
}
