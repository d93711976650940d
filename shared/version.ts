import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * CountApp's version, from its package.json: the nearest one above this file named
 * `countapp` (one level up from the sources, two from their build in dist/).
 */
export const VERSION: string = readVersion(path.dirname(fileURLToPath(import.meta.url)));

function readVersion(from: string): string {
  for (let dir = from; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'countapp' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json here: go up.
    }
  }
  return 'unknown';
}
