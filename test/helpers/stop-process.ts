import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** How a child process ended. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Resolves once `child` has exited: at once when it already has, or when it never started. */
export function exitOf(child: ChildProcess): Promise<ExitInfo> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

export interface StopProcessOptions {
  /** The polite request. @default 'SIGTERM' */
  readonly signal?: NodeJS.Signals;
  /** Send it to the child's whole process group (the child was spawned `detached`), like Ctrl-C in a terminal. @default false */
  readonly group?: boolean;
  /** How long the child gets to exit before it is killed. @default 5000 */
  readonly timeoutMs?: number;
  /** Does the killing after the timeout (e.g. SIGKILL a whole cluster). @default SIGKILL to the child */
  readonly kill?: () => void;
}

/**
 * Stops a child process the way every harness process is stopped: ask politely (`signal`),
 * SIGKILL after `timeoutMs`, then wait for the 'exit'. Resolves with how it exited and
 * whether it had to be killed. A child that already exited resolves at once.
 */
export async function stopProcess(child: ChildProcess, options: StopProcessOptions = {}): Promise<ExitInfo & { readonly killed: boolean }> {
  const exited = exitOf(child);
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return { ...(await exited), killed: false };
  signal(options.group === true ? -pid : pid, options.signal ?? 'SIGTERM');
  const timeoutMs = options.timeoutMs ?? 5000;
  const first = await Promise.race([exited, sleep(timeoutMs, undefined, { ref: false })]);
  if (first !== undefined) return { ...first, killed: false };
  if (options.kill !== undefined) options.kill();
  else signal(pid, 'SIGKILL');
  return { ...(await exited), killed: true };
}

/** process.kill that ignores a process already gone. */
export function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
