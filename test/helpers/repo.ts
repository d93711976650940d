import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root: the nearest folder above this file whose package.json is CountApp's.
 * Found by walking up, so it is right both for the TypeScript sources (the tests) and for
 * their compiled copy in dist/test/helpers/ (the benchmarks).
 */
export const REPO_ROOT: string = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

/** The built coordinator (`make build` writes it). */
export const COORDINATOR_ENTRY: string = path.join(REPO_ROOT, 'dist', 'coordinator', 'main.js');

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown };
      if (pkg.name === 'countapp') return dir;
    } catch {
      // No package.json here: go up.
    }
    if (path.dirname(dir) === dir) throw new Error(`cannot find the countapp package.json above ${from}`);
  }
}
