/** Error codes whose plain words tell an operator what to do better than the system's message. */
const IN_WORDS: Readonly<Record<string, string>> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exhausted',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EIO: 'an I/O error',
};

/**
 * One line saying what went wrong, for a log line or an error message: plain words for
 * the disk errors an operator can act on (a full disk, a read-only file system), else the
 * error's code and message, and its cause's code when it wraps one (undici and axios do).
 * The full detail, stack included, goes to the log beside it.
 */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && IN_WORDS[code] !== undefined) return IN_WORDS[code]!;
  const cause = err.cause instanceof Error ? ` (${(err.cause as { code?: string }).code ?? err.cause.message})` : '';
  const prefix = typeof code === 'string' && !err.message.includes(code) ? `${code}: ` : '';
  return `${prefix}${err.message || err.name}${cause}`;
}
