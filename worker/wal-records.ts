import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseJsonLines } from '../shared/json-lines.js';
import type { Limits } from '../shared/items.js';
import { readPlainBatch } from '../shared/plain-batch.js';
import type { Pending } from './pending.js';
import { decodeIdMap } from './store/id-map.js';
import { segmentName } from './wal.js';

/**
 * Reading write-ahead log records back (a worker's own at start-up, an adopted one).
 * Three shapes, told apart by their first element:
 * - `[{"id":..,"tenant":..}, ...]` — a batch as its client sent it (validated then; keys
 *   matched exactly or, like the original's decoder, case-insensitively);
 * - `{"tenant": ["id", ...], ...}` — ids handed over by another worker or re-logged;
 * - `["tenant", "id", "tenant", "id", ...]` — the flattened pairs of earlier versions.
 * Limits are not checked again: what was acknowledged is replayed whatever the config says now.
 * Nor are the characters: a record holding one refused since (C1 control characters, taken
 * by earlier versions) leaves the plain reader for JSON.parse, and is replayed as it is.
 */

/** What was acknowledged is replayed whatever the limits say now. */
const NO_LIMITS: Limits = { max_batch_items: Infinity, max_id_length: Infinity, max_tenant_length: Infinity };

/** A batch record of the common shape, read without JSON.parse (see plain-batch.ts). */
const readPlainRecord = (line: string): unknown => readPlainBatch(line, NO_LIMITS);

/** The value of `key` in `item`: the exact key, else the first key equal to it ignoring case. */
function field(item: Record<string, unknown>, key: string): unknown {
  const exact = item[key];
  if (exact !== undefined) return exact;
  for (const name of Object.keys(item)) if (name.toLowerCase() === key) return item[name];
  return undefined;
}

/** Adds one record's ids to `pending`; returns false for a record of no known shape. */
export function applyRecord(value: unknown, pending: Pending): boolean {
  if (Array.isArray(value)) {
    if (value.length === 0) return true;
    if (typeof value[0] === 'string') {
      const items = [];
      for (let i = 0; i + 1 < value.length; i += 2) {
        if (typeof value[i] === 'string' && typeof value[i + 1] === 'string') items.push({ tenant: value[i] as string, id: value[i + 1] as string });
      }
      pending.addItems(items);
      return true;
    }
    const items = [];
    for (const item of value) {
      if (item === null || typeof item !== 'object') continue;
      const id = field(item as Record<string, unknown>, 'id');
      const tenant = field(item as Record<string, unknown>, 'tenant');
      if (typeof id === 'string' && typeof tenant === 'string') items.push({ id, tenant });
    }
    pending.addItems(items);
    return true;
  }
  try {
    pending.addMap(decodeIdMap(value));
    return true;
  } catch {
    return false;
  }
}

/** Replays the given segments of `folder` into `pending`; returns how many records it could not read. */
export async function replaySegments(folder: string, seqs: readonly number[], pending: Pending): Promise<{ records: number; badLines: number }> {
  let records = 0;
  let badLines = 0;
  for (const seq of seqs) {
    const file = path.join(folder, segmentName(seq));
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // The path is what an operator needs (a segment replaced by a directory says only EISDIR).
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw Object.assign(new Error(`cannot read write-ahead log segment ${file} (${code})`, { cause: err }), { code });
    }
    const result = parseJsonLines(text, (value) => {
      if (applyRecord(value, pending)) records++;
      else badLines++;
    }, readPlainRecord);
    badLines += result.badLines;
    // A last record cut mid-write (the worker died in it): never acknowledged, so skipped.
    if (text.length > 0 && !text.endsWith('\n')) badLines++;
  }
  return { records, badLines };
}
