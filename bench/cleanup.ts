import fs from 'node:fs';

/**
 * Everything the harness started or created, so that nothing outlives it: processes are
 * killed by pid (never by name) and temp folders removed, on a normal end, on an error,
 * and on SIGINT/SIGTERM.
 */

const pids = new Set<number>();
const dirs = new Set<string>();
const hooks = new Set<() => Promise<void>>();

export function trackPid(pid: number | undefined): void {
  if (pid !== undefined) pids.add(pid);
}

export function untrackPid(pid: number | undefined): void {
  if (pid !== undefined) pids.delete(pid);
}

export function trackDir(dir: string): void {
  dirs.add(dir);
}

export function removeDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // A file still being written by a dying process; the exit hook tries again.
    return;
  }
  dirs.delete(dir);
}

/** A graceful stop to run on SIGINT/SIGTERM before the hard kill (e.g. a cluster's stop()). */
export function onInterrupt(hook: () => Promise<void>): () => void {
  hooks.add(hook);
  return () => hooks.delete(hook);
}

/** True while `pid` runs (a zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !/\)\s+[ZX]\s/.test(readStat(pid));
}

function readStat(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
}

/** The direct children of `pid` (Linux /proc), e.g. the workers of a coordinator. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const text = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // Gone already.
  }
  return out;
}

/** SIGKILLs every tracked process and removes every tracked folder, synchronously. */
export function killEverythingSync(): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  pids.clear();
  for (const dir of [...dirs]) removeDir(dir);
}

let interrupted = false;

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) {
    killEverythingSync();
    process.exit(130);
  }
  interrupted = true;
  process.stderr.write(`\nbench: ${signal}: stopping everything it started...\n`);
  const hard = setTimeout(() => {
    killEverythingSync();
    process.exit(130);
  }, 15_000);
  Promise.allSettled([...hooks].map((hook) => hook())).finally(() => {
    clearTimeout(hard);
    killEverythingSync();
    process.exit(130);
  });
}

/** Installs the exit and signal handlers once. */
export function installCleanup(): void {
  process.on('exit', killEverythingSync);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
