import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exitOf, stopProcess } from '../test/helpers/stop-process.js';

/**
 * A helper process of the harness (the minimal proxy, the count prober): a compiled
 * file next to this one, forked with an IPC channel. It says `{type: 'ready'}` once it
 * serves; it exits on SIGTERM or when the harness goes away (IPC disconnect).
 */
export interface BenchChild {
  readonly pid: number;
  readonly process: ChildProcess;
  /** The next IPC message of this `type`. */
  next<T>(type: string, timeoutMs?: number): Promise<T>;
  send(message: unknown): void;
  /** SIGTERM, SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const running = new Set<BenchChild>();

/** Stops every helper process still running (on an interrupt, or at the end). */
export async function stopAllChildren(): Promise<void> {
  await Promise.allSettled([...running].map((child) => child.stop()));
}

export async function startChild(script: string, args: readonly string[], readyTimeoutMs = 15_000): Promise<BenchChild> {
  const child = fork(path.join(here, script), [...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not fork ${script}`);
  const exit = exitOf(child);
  const inbox: Array<{ type: string }> = [];
  const waiters: Array<{ type: string; resolve: (m: unknown) => void }> = [];
  child.on('message', (message: { type: string }) => {
    const i = waiters.findIndex((w) => w.type === message.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(message);
    else inbox.push(message);
  });
  const next = <T>(type: string, timeoutMs = 120_000): Promise<T> => {
    const i = inbox.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0] as T);
    return new Promise<T>((resolve, reject) => {
      const waiter = { type, resolve: (m: unknown) => { clearTimeout(timer); resolve(m as T); } };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error(`${script}: no '${type}' message within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.push(waiter);
      void exit.then(() => {
        if (waiters.includes(waiter)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${script} exited before sending '${type}'`));
        }
      });
    });
  };
  let stopping: Promise<void> | undefined;
  const handle: BenchChild = {
    pid,
    process: child,
    next,
    send: (m) => child.send(m as never),
    stop: () => {
      stopping ??= stopProcess(child, { signal: 'SIGTERM', timeoutMs: 5_000 }).then(() => {
        running.delete(handle);
      });
      return stopping;
    },
  };
  running.add(handle);
  try {
    await next('ready', readyTimeoutMs);
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return handle;
}
