import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';

/**
 * Makes what was written to `path` survive a power cut: fdatasync for a file's data, a
 * full fsync for a folder (so a file just created in it keeps its entry).
 */
export async function syncToDisk(path: string, kind: 'file' | 'folder'): Promise<void> {
  const handle = await open(path, 'r');
  try {
    if (kind === 'file') await handle.datasync();
    else await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Makes everything written to the file system holding `path` survive a power cut, in one
 * call: syncfs(2), through coreutils' `sync --file-system` (Node has no binding for it).
 * One journal commit for a whole persist round, where an fsync per tenant file would
 * queue thousands of them behind each other and behind the write-ahead log's own.
 */
export function syncFileSystem(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sync', ['--file-system', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`sync --file-system ${path} failed (${signal ?? `exit code ${code}`}): ${stderr.trim().slice(0, 200)}`));
    });
  });
}
