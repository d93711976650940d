/** A disk error in words an operator can act on. */
export function describeDiskError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOSPC': return 'the disk is full';
    case 'EDQUOT': return 'the disk quota is exhausted';
    case 'EROFS': return 'the file system is read-only';
    case 'EACCES':
    case 'EPERM': return 'permission denied';
    case 'EIO': return 'an I/O error';
    default: return err instanceof Error ? err.message : String(err);
  }
}
