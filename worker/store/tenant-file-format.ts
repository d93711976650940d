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

/** Every id in the complete lines of `text` (repeats possible in files of earlier versions). */
export function parseTenantLines(text: string): { ids: string[]; badLines: number } {
  const ids: string[] = [];
  const { badLines } = parseJsonLines(text, (value) => {
    if (!Array.isArray(value)) return; // the header
    for (const id of value) if (typeof id === 'string') ids.push(id);
  });
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
