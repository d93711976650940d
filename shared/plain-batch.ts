import type { Item, Limits } from './items.js';

/**
 * Reading the common shape of a batch without `JSON.parse`:
 * `[{"id":"…","tenant":"…"},…]` (either key order, spaces between tokens allowed, no
 * escapes). V8's JSON.parse stores every string value shorter than 10 characters in its
 * string table (a hash lookup, and a table that grows with every new id until the next
 * full GC); short ids are common, and with them the string table was the largest single
 * cost of a worker's CPU profile. Slicing the text makes plain strings instead.
 *
 * Anything else — escapes, other or repeated keys, other types, a value the limits
 * refuse, too many items, whitespace other than spaces, trailing text — answers
 * `undefined`, and the caller takes the full path (JSON.parse, then validateBatch), which
 * accepts the same batches and reports what is wrong with the others. So this only ever
 * accepts a batch that path accepts, with the same items.
 */

/**
 * Characters that send a batch down the full path: escapes, and every control character
 * validateBatch refuses (C0 with tab, CR and LF among them, DEL, C1), so this path never
 * takes a batch that one refuses. A write-ahead log record holding one (acknowledged before
 * C1 was refused) is then read by JSON.parse, which takes it as it is (wal-records.ts).
 */
const NEEDS_FULL_PARSE = /[\u0000-\u001f\u007f-\u009f\\]/;

const SPACE = 0x20;
const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/** Where reading stopped; module state so a read returns a string, not a pair. */
let cursor = 0;

function skipSpaces(text: string, at: number): number {
  while (text.charCodeAt(at) === SPACE) at++;
  return at;
}

/** The string starting at `at` (a quote; no escapes in the text), cursor after it; undefined when there is none. */
function readString(text: string, at: number): string | undefined {
  if (text.charCodeAt(at) !== QUOTE) return undefined;
  const end = text.indexOf('"', at + 1);
  if (end === -1) return undefined;
  cursor = end + 1;
  return text.slice(at + 1, end);
}

/** `"key": "value"` at `at`, cursor after the value; returns the value, or undefined unless the key is `key`. */
function readField(text: string, at: number, key: string): string | undefined {
  if (readString(text, at) !== key) return undefined;
  const colon = skipSpaces(text, cursor);
  if (text.charCodeAt(colon) !== COLON) return undefined;
  return readString(text, skipSpaces(text, colon + 1));
}

function fits(value: string, maxLength: number): boolean {
  return value.length > 0 && value.length <= maxLength;
}

/** The items of a plain batch that the limits accept; undefined for anything to leave to JSON.parse and validateBatch. */
export function readPlainBatch(text: string, limits: Limits): Item[] | undefined {
  if (NEEDS_FULL_PARSE.test(text)) return undefined;
  let at = skipSpaces(text, 0);
  if (text.charCodeAt(at) !== OPEN_ARRAY) return undefined;
  at = skipSpaces(text, at + 1);
  const items: Item[] = [];
  if (text.charCodeAt(at) !== CLOSE_ARRAY) {
    for (;;) {
      if (items.length === limits.max_batch_items || text.charCodeAt(at) !== OPEN_OBJECT) return undefined;
      at = skipSpaces(text, at + 1);
      const idFirst = text.startsWith('"id"', at);
      const first = readField(text, at, idFirst ? 'id' : 'tenant');
      if (first === undefined) return undefined;
      at = skipSpaces(text, cursor);
      if (text.charCodeAt(at) !== COMMA) return undefined;
      const second = readField(text, skipSpaces(text, at + 1), idFirst ? 'tenant' : 'id');
      if (second === undefined) return undefined;
      at = skipSpaces(text, cursor);
      if (text.charCodeAt(at) !== CLOSE_OBJECT) return undefined;
      const id = idFirst ? first : second;
      const tenant = idFirst ? second : first;
      if (!fits(id, limits.max_id_length) || !fits(tenant, limits.max_tenant_length)) return undefined;
      items.push({ id, tenant });
      at = skipSpaces(text, at + 1);
      if (text.charCodeAt(at) === CLOSE_ARRAY) break;
      if (text.charCodeAt(at) !== COMMA) return undefined;
      at = skipSpaces(text, at + 1);
    }
  }
  return skipSpaces(text, at + 1) === text.length ? items : undefined;
}
