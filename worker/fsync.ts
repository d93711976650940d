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
