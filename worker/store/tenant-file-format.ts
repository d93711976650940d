import { readSync } from 'node:fs';
import { parseJsonLines } from '../../shared/json-lines.js';

/**
 * A tenant file is append-only JSON Lines: a header `{"tenant": NAME}`, then one line per
 * append holding the ids new to the file followed by the file's distinct count after
 * them: `["id7","id9",42]`. Appending makes a persist cost O(new ids); the count at the
 * end of the last line lets any worker answer the tenant's count from the file's last
 * few bytes, without holding its ids. Files of earlier versions (lines of ids without a
 * count) are read in full once instead.
 *
 * A reader takes only lines ending in "\n", so it never sees half a write; a line torn by
 * a crash stays unterminated until the next writer ends it, and is skipped as unparsable
 * (the crashed writer's write-ahead log still has its ids). Nothing rewrites or truncates
 * a tenant file.
 */

/** The first line of a new tenant file: the tenant's name, for people reading the folder. */
export function encodeHeader(tenant: string): string {
  return `${JSON.stringify({ tenant })}\n`;
}

/** One append: `ids` (not empty, none already in the file), then the file's distinct count after them. */
export function encodeAppend(ids: readonly string[], count: number): string {
  const json = JSON.stringify(ids);
  return `${json.slice(0, -1)},${count}]\n`;
}

/** Escapes and control characters: a line holding one is left to JSON.parse. */
const NEEDS_JSON_PARSE = /[\u0000-\u001f\\]/;
const QUOTE = 0x22;
const COMMA = 0x2c;
const CLOSE = 0x5d;

/**
 * A line of ids as this project writes it, `["a","b",42]` (or `["a","b"]`, an earlier
 * version's), read by splitting instead of JSON.parse: V8's JSON.parse puts every string
 * under 10 characters into its string table, and an owner reads a whole file this way
 * when it first merges into it (after a start, or when a shard changes owner): 1,000,000
 * short ids took 470 ms with JSON.parse and 56 ms split. Anything else (spaces, escapes,
 * a count JSON would refuse, a header, a torn line) is left to JSON.parse: undefined.
 */
export function readPlainIdLine(line: string): unknown {
  if (!line.startsWith('["') || line.charCodeAt(line.length - 1) !== CLOSE || NEEDS_JSON_PARSE.test(line)) return undefined;
  // The count: digits before the final ']', without a leading zero (JSON has none).
  let digits = line.length - 1;
  while (digits > 0 && line.charCodeAt(digits - 1) >= 0x30 && line.charCodeAt(digits - 1) <= 0x39) digits--;
  const count = line.slice(digits, -1);
  if (count.length > 1 && count.startsWith('0')) return undefined;
  let idsEnd = digits - 1; // the closing quote of the last id
  if (count.length > 0) {
    if (line.charCodeAt(digits - 1) !== COMMA) return undefined;
    idsEnd = digits - 2;
  }
  if (idsEnd < 2 || line.charCodeAt(idsEnd) !== QUOTE) return undefined;
  const inner = line.slice(2, idsEnd);
  const values: unknown[] = inner.split('","');
  // With no escapes every quote ends a string, so the only quotes are the separators'.
  let quotes = 0;
  for (let at = inner.indexOf('"'); at !== -1; at = inner.indexOf('"', at + 1)) quotes++;
  if (quotes !== 2 * (values.length - 1)) return undefined;
  if (count.length > 0) values.push(Number(count));
  return values;
}

/** Every id in the complete lines of `text` (repeats possible in files of earlier versions). */
export function parseTenantLines(text: string): { ids: string[]; badLines: number } {
  const ids: string[] = [];
  const { badLines } = parseJsonLines(text, (value) => {
    if (!Array.isArray(value)) return; // the header
    for (const id of value) if (typeof id === 'string') ids.push(id);
  }, readPlainIdLine);
  return { ids, badLines };
}

/** How many bytes from the end the count of the last line can take at most (`,` + 16 digits + `]`). */
const COUNT_TAIL = 24;
const FIRST_WINDOW = 256;

/** The count a line ends with, `undefined` when it has none (a header, a line of an earlier version, a torn line). */
export function countAtEndOfLine(line: string): number | 'header' | undefined {
  // Only the header is an object: lines of ids are arrays, so they end with ']'.
  if (line.endsWith('}')) return 'header';
  if (!line.endsWith(']')) return undefined;
  let i = line.length - 2;
  while (i >= 0 && line.charCodeAt(i) >= 0x30 && line.charCodeAt(i) <= 0x39) i--;
  if (i === line.length - 2 || i < 0) return undefined;
  const before = line[i];
  if (before !== ',' && before !== '[') return undefined;
  return Number(line.slice(i + 1, -1));
}

/**
 * The tenant's distinct count as the last complete line of the open file `fd` (of `size`
 * bytes) states it, reading only the file's end; `undefined` when that line carries no
 * count (then the caller reads the whole file). `complete` is where the complete lines end.
 */
export function readCountAtEnd(fd: number, size: number): { count: number | undefined; complete: number } {
  if (size === 0) return { count: 0, complete: 0 };
  // Find the last "\n": usually the final byte; further back only behind a torn tail.
  let window = Math.min(size, FIRST_WINDOW);
  let buffer = Buffer.allocUnsafe(window);
  let newline = -1;
  for (;;) {
    const start = size - window;
    const read = readFully(fd, buffer, window, start);
    const at = buffer.lastIndexOf(0x0a, read - 1);
    if (at !== -1) {
      newline = start + at;
      break;
    }
    if (start === 0) return { count: 0, complete: 0 }; // no complete line yet
    window = Math.min(size, window * 8);
    buffer = Buffer.allocUnsafe(window);
  }
  const lineStart = Math.max(0, newline - COUNT_TAIL);
  const tail = Buffer.allocUnsafe(newline - lineStart);
  readFully(fd, tail, tail.length, lineStart);
  let text = tail.toString('utf8');
  // The line may be shorter than COUNT_TAIL: keep only its own bytes.
  const previous = text.lastIndexOf('\n');
  if (previous !== -1) text = text.slice(previous + 1);
  const count = countAtEndOfLine(text);
  // The header written alone: the file has no ids yet.
  if (count === 'header') return { count: 0, complete: newline + 1 };
  return { count, complete: newline + 1 };
}

function readFully(fd: number, buffer: Buffer, length: number, position: number): number {
  let filled = 0;
  while (filled < length) {
    const n = readSync(fd, buffer, filled, length - filled, position + filled);
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

/** Reads `length` bytes at `position` of `fd` (fewer at the end of the file). */
export function readRange(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  const filled = readFully(fd, buffer, length, position);
  return filled === length ? buffer : buffer.subarray(0, filled);
}
