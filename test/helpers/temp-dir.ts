import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Folders made by `makeTempDir` and not removed yet: removed when this process exits at the latest. */
const dirs = new Set<string>();

/**
 * A fresh folder `<prefix>XXXXXX` in the OS temp dir (prefix e.g. `countapp-`). It is
 * removed by `removeTempDir`, or when this process exits if nobody did; with `keep: true`
 * it is left for a person to read (logs, tenant files).
 */
export function makeTempDir(prefix: string, options: { readonly keep?: boolean } = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (options.keep !== true) dirs.add(dir);
  return dir;
}

/** Removes a folder made by `makeTempDir` (best effort: a process still writing may leave it until exit). */
export function removeTempDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    dirs.delete(dir);
  } catch {
    // Still in use; the exit hook tries again.
  }
}

process.on('exit', () => {
  for (const dir of dirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // Nothing more to do at exit.
    }
  }
});

/** Temp folders of one test file: `make` them as `makeTempDir` does, `removeAll` in its afterEach. */
export class TempDirs {
  readonly #dirs: string[] = [];

  make(prefix: string): string {
    const dir = makeTempDir(prefix);
    this.#dirs.push(dir);
    return dir;
  }

  removeAll(): void {
    for (const dir of this.#dirs.splice(0)) removeTempDir(dir);
  }
}
