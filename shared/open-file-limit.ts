import { readFileSync } from 'node:fs';

/** What we assume where the limit cannot be read (the usual soft limit of a login shell). */
const ASSUMED_LIMIT = 1024;

let cached: number | undefined;

/**
 * This process's soft limit on open files (`ulimit -n`), read once from /proc/self/limits
 * (Node raises the soft limit to the hard one at start-up, so this is the figure that
 * counts). Infinity when unlimited; ASSUMED_LIMIT where it cannot be read.
 */
export function openFileLimit(): number {
  cached ??= readLimit() ?? ASSUMED_LIMIT;
  return cached;
}

function readLimit(): number | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return undefined;
  }
  return parseOpenFileLimit(text);
}

/** The soft "Max open files" figure of a /proc/<pid>/limits text; undefined when absent. */
export function parseOpenFileLimit(limits: string): number | undefined {
  const line = limits.split('\n').find((row) => row.startsWith('Max open files'));
  const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
  if (soft === 'unlimited') return Infinity;
  const value = Number(soft);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/** The most `max_connections` may default to, whatever the limit. */
export const MAX_DEFAULT_CONNECTIONS = 100_000;

/**
 * The default cap on client connections for an open-file limit: half of it, so the other
 * half stays for the connections to the workers (up to 32 per worker), the workers' pipes,
 * health checks, log files and the config watcher. At least 32, at most MAX_DEFAULT_CONNECTIONS.
 */
export function defaultMaxConnections(limit: number = openFileLimit()): number {
  return Math.max(32, Math.min(MAX_DEFAULT_CONNECTIONS, Math.floor(limit / 2)));
}
