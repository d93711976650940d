/**
 * Errors that mean the coordinator itself ran out of a resource (file descriptors, memory,
 * processes), whatever it was doing at the time: a health check, a fork, a file read.
 * They say nothing about the worker on the other end, so nothing is ever blamed on it.
 */
const OWN_RESOURCE_CODES: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EAGAIN']);

/** The error's code when it is one of the coordinator's own resource errors, else undefined. */
export function ownResourceErrorCode(err: unknown): string | undefined {
  for (let cause = err, depth = 0; cause !== null && typeof cause === 'object' && depth < 5; depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && OWN_RESOURCE_CODES.has(code)) return code;
    cause = (cause as { cause?: unknown }).cause;
  }
  return undefined;
}

/** What to tell the operator about such an error, `code` as ownResourceErrorCode returned it. */
export function describeOwnResourceError(code: string): string {
  return code === 'EMFILE' || code === 'ENFILE'
    ? `the coordinator is out of file descriptors (${code}): raise \`ulimit -n\` or lower \`max_connections\``
    : `the coordinator is out of resources (${code})`;
}
