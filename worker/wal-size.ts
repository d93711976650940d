import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Bytes of every file in a write-ahead log folder (the current segment and any sealed
 * one not deleted yet), for the status route and the metrics. A few stat calls: the
 * folder holds one segment, two during a round, more only while rounds fail.
 */
export function walFolderBytes(folder: string): number {
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return 0;
  }
  for (const name of names) {
    try {
      total += statSync(path.join(folder, name)).size;
    } catch {
      // Deleted between the listing and the stat: a round dropped it.
    }
  }
  return total;
}
