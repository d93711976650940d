import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * A tenant file is append-only JSON Lines: an optional header line `{"tenant": ...}`,
 * then one JSON array of ids per persist. Appending makes a persist cost O(new ids)
 * instead of rewriting the whole tenant, and lets every reader catch up by reading only
 * the bytes added since its last read. A reader only takes lines ending in "\n", so it
 * never sees a half-written line; a line torn by a crash (the writer died mid-append)
 * stays unterminated until the next writer ends it with "\n", and is skipped as
 * unparsable. Its ids are not lost: the crashed writer still has them in its
 * write-ahead log and writes them again. Nothing ever rewrites or truncates the file.
 */

/** Where a reader stands in a tenant file. */
export interface ReadPosition {
  /** Inode of the file read so far (0: nothing read yet). A different inode means a new file. */
  readonly ino: number;
  /** Bytes consumed: always just after a "\n". */
  readonly offset: number;
}

export interface TailRead extends ReadPosition {
  /** Ids of the complete lines after the previous position (duplicates possible). */
  readonly ids: string[];
  /** File size seen: equal to offset unless the last line is unterminated. */
  readonly size: number;
  /** Lines that were complete but not valid JSON (torn by a crash and later terminated). */
  readonly badLines: number;
}

export const EMPTY_POSITION: ReadPosition = { ino: 0, offset: 0 };

/**
 * Cheap check (one stat) whether the file may hold bytes the reader has not seen.
 * Synchronous on purpose: a stat takes microseconds, while the asynchronous one waits
 * for a thread-pool slot behind the write-ahead log's fsyncs under load (count latency).
 */
export function hasNewBytes(file: string, position: ReadPosition & { size: number }): boolean {
  const info = statSync(file, { throwIfNoEntry: false });
  if (info === undefined) return false;
  return info.ino !== position.ino || info.size !== position.size;
}

/** Reads the complete lines added since `from`; a missing file reads as empty. */
export async function readTail(file: string, from: ReadPosition): Promise<TailRead> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ...EMPTY_POSITION, ids: [], size: 0, badLines: 0 };
    throw err;
  }
  try {
    const info = await handle.stat();
    // Another inode (the file was replaced) or a shorter file: start over; ids only add up.
    const start = info.ino === from.ino && info.size >= from.offset ? from.offset : 0;
    const length = info.size - start;
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await handle.read(buffer, filled, length - filled, start + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const end = buffer.lastIndexOf(10, filled - 1);
    const complete = end < 0 ? 0 : end + 1;
    const { ids, badLines } = parseLines(buffer.toString('utf8', 0, complete));
    return { ino: info.ino, offset: start + complete, size: start + filled, ids, badLines };
  } finally {
    await handle.close();
  }
}

function parseLines(text: string): { ids: string[]; badLines: number } {
  const ids: string[] = [];
  let badLines = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      badLines++;
      continue;
    }
    if (Array.isArray(value)) {
      for (const id of value) if (typeof id === 'string') ids.push(id);
    } else if (value === null || typeof value !== 'object') {
      badLines++;
    }
    // An object line is the header: nothing to count.
  }
  return { ids, badLines };
}

/**
 * Appends one line of ids in a single write. `terminateTorn` first ends a torn last
 * line with "\n" so our line stays parsable. A new file starts with a header naming the
 * tenant, for people reading the folder. Not fsynced here: the persister syncs every
 * file of a round at once afterwards (see TenantStore.syncWritten), outside the lock.
 */
export async function appendIds(
  file: string,
  tenant: string,
  ids: readonly string[],
  options: { terminateTorn: boolean },
): Promise<{ ino: number; start: number; end: number; created: boolean }> {
  const handle = await open(file, 'a');
  try {
    const { size, ino } = await handle.stat();
    const created = size === 0;
    const head = created ? `${JSON.stringify({ tenant })}\n` : options.terminateTorn ? '\n' : '';
    const data = Buffer.from(`${head}${JSON.stringify(ids)}\n`, 'utf8');
    await handle.appendFile(data);
    // Under the lock nobody else appends: our bytes are [size, size + length).
    return { ino, start: size, end: size + data.length, created };
  } finally {
    await handle.close();
  }
}
