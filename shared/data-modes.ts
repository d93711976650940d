import { fchmodSync, fstatSync } from 'node:fs';

/**
 * Permissions of what CountApp writes under `database` (and its logs, which hold ids):
 * readable and writable by the user the cluster runs as, nobody else — as PostgreSQL and
 * Redis keep their data. Applied at creation, so the umask can only narrow them further.
 */
export const DATA_DIR_MODE = 0o700;
export const DATA_FILE_MODE = 0o600;

/**
 * Narrows an open file that already existed (a log made 0644 by an older version) to
 * DATA_FILE_MODE: group and other bits are dropped, the owner's are never added. Only a
 * regular file of ours is touched (fchmod on it cannot fail for rights, and another user's
 * file is that user's choice); best effort, as the file is usable either way.
 */
export function tightenFileMode(fd: number): void {
  try {
    const stat = fstatSync(fd);
    const narrowed = stat.mode & 0o777 & DATA_FILE_MODE;
    if (stat.isFile() && stat.uid === process.getuid?.() && (stat.mode & 0o777) !== narrowed) fchmodSync(fd, narrowed);
  } catch {
    // Left as it was: the log still works.
  }
}
