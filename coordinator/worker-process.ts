import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Config, WorkerSpec } from '../shared/config.js';
import { DATA_DIR_MODE, DATA_FILE_MODE, tightenFileMode } from '../shared/data-modes.js';
import { isWorkerMessage, type CoordinatorMessage, type MemberInfo } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { ownResourceErrorCode } from './resource-errors.js';
import { requestKill } from './worker-client.js';

/**
 * Node flags for the workers, e.g. `COUNTAPP_WORKER_NODE_ARGS='--cpu-prof --cpu-prof-dir=prof'`
 * to profile them (Node refuses --cpu-prof in NODE_OPTIONS). The coordinator's own flags
 * are not passed on.
 */
export const WORKER_NODE_ARGS: readonly string[] = (process.env.COUNTAPP_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** How a worker process ended. */
export interface WorkerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The message of the worker's own 'fatal' report, when it sent one (it could not start). */
  readonly fatal: string | undefined;
}

/** How stop() got the process to exit. */
export type StopOutcome =
  /** It answered /kill (it persisted) and exited. */
  | 'persisted'
  /** It answered /kill and exited, leaving ids it could not persist in time in its write-ahead log. */
  | 'kept'
  /** It exited after SIGTERM (not ready yet, or /kill was refused or not enough). */
  | 'terminated'
  /** It was still running after the timeout: SIGKILL. */
  | 'killed'
  /** It had exited already, or exited on its own before being asked. */
  | 'exited';

/** Options of a WorkerProcess. */
export interface WorkerProcessOptions {
  readonly spec: WorkerSpec;
  /** The script to fork (`dist/worker/main.js`). */
  readonly entry: string;
  /** Node flags for the child. @default WORKER_NODE_ARGS */
  readonly execArgv?: readonly string[];
  /** The child's stdout and stderr are appended here; the coordinator's own output when undefined or it cannot be opened. */
  readonly logFile?: string;
  /** Proves to the worker's control endpoints that a call comes from the coordinator; sent over IPC only. */
  readonly secret: string;
  readonly log: Logger;
}

/** A worker that exited (or reported it could not start) before it was ready. */
export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
}

/** "code 1", "signal SIGKILL": for log lines and status rows. */
export function describeExit(exit: { readonly code: number | null; readonly signal: NodeJS.Signals | null }): string {
  if (exit.signal !== null) return `signal ${exit.signal}`;
  return exit.code === null ? 'no exit code' : `code ${exit.code}`;
}

/**
 * One forked worker process, from fork to exit. It is started once: a respawn is a new
 * WorkerProcess, so nothing of a failed start is ever reused. Its stdout and stderr go to
 * its log file, its messages are typed (shared/ipc.ts), and `ready` and `exited` tell the
 * owner what happened. stop() escalates: `/kill` with the secret (the worker persists,
 * answers, exits), SIGTERM when that is refused or not enough, SIGKILL after the timeout,
 * and it always waits for the 'exit' event.
 */
export class WorkerProcess {
  readonly #spec: WorkerSpec;
  readonly #entry: string;
  readonly #execArgv: readonly string[];
  readonly #logFile: string | undefined;
  readonly #secret: string;
  readonly #log: Logger;
  #child: ChildProcess | undefined;
  #pid: number | undefined;
  #readyAt: number | undefined;
  #fatal: string | undefined;
  #exit: WorkerExit | undefined;
  #started = false;
  #stopping: Promise<StopOutcome> | undefined;
  #resolveReady!: () => void;
  #rejectReady!: (err: Error) => void;
  #resolveExited!: (exit: WorkerExit) => void;

  /** Resolves when the worker reports 'ready'; rejects (WorkerStartError) when it exits first or cannot be spawned. */
  readonly ready: Promise<void>;
  /** Resolves once the process has exited, or at once when it could not be spawned at all; never rejects. */
  readonly exited: Promise<WorkerExit>;

  constructor(options: WorkerProcessOptions) {
    this.#spec = options.spec;
    this.#entry = options.entry;
    this.#execArgv = options.execArgv ?? WORKER_NODE_ARGS;
    this.#logFile = options.logFile;
    this.#secret = options.secret;
    this.#log = options.log;
    this.ready = new Promise<void>((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    // Whoever does not await `ready` must not get an unhandled rejection.
    this.ready.catch(() => {});
    this.exited = new Promise<WorkerExit>((resolve) => {
      this.#resolveExited = resolve;
    });
  }

  /** The process id while the process runs; undefined before start() and after the exit. */
  get pid(): number | undefined {
    return this.#exit === undefined ? this.#pid : undefined;
  }

  /** When the worker reported 'ready' (Date.now()), if it did. */
  get readyAt(): number | undefined {
    return this.#readyAt;
  }

  /** The exit, once it happened. */
  get exit(): WorkerExit | undefined {
    return this.#exit;
  }

  /**
   * Opens the log file, forks the worker and sends it `init` (its id, the secret, and the
   * config and live membership that `init` returns at that moment). Rejects when the process cannot be spawned; the error
   * keeps its code, so the caller can tell the coordinator's own EMFILE from the rest.
   * A second call throws: a process is never started twice.
   */
  async start(init: () => { readonly config: Config; readonly members: readonly MemberInfo[] }): Promise<void> {
    if (this.#started) throw new Error(`${this.#spec.id}: a WorkerProcess is started once; a respawn is a new WorkerProcess`);
    this.#started = true;
    const handle = await this.#openLog();
    if (this.#stopping !== undefined) {
      // stop() came while the log was opening: never fork (stop() is waiting for `exited`).
      await handle?.close().catch(() => {});
      const err = new WorkerStartError(`${this.#spec.id} was stopped before it was spawned`);
      this.#neverStarted(err);
      throw err;
    }
    let child: ChildProcess;
    try {
      const out = handle?.fd ?? 'inherit';
      child = fork(this.#entry, [], { stdio: ['ignore', out, out, 'ipc'], execArgv: [...this.#execArgv], detached: false });
    } catch (err) {
      this.#neverStarted(err);
      throw err;
    } finally {
      // The child has its own copy of the descriptor now (or there is no child).
      handle?.close().catch((err: unknown) => this.#log.warn(`could not close ${this.#logFile} in the coordinator`, err));
    }
    this.#child = child;
    this.#pid = child.pid;
    const spawnFailed = new Promise<Error>((resolve) => {
      child.on('error', (err) => {
        if (this.#pid === undefined) resolve(err);
        // After a successful spawn, only a failed kill or send: the process's own 'exit' tells the rest.
        else this.#log.warn(`${this.#spec.id}: ${err.message}`);
      });
    });
    if (this.#pid === undefined) {
      // Node reports a failed spawn (EMFILE, EAGAIN, ENOENT) with an 'error' event on the next tick, and no 'exit'.
      const err = await spawnFailed;
      this.#neverStarted(err);
      throw err;
    }
    child.on('message', (message: unknown) => this.#onMessage(message));
    child.on('exit', (code, signal) => this.#onExit(code, signal));
    // Read now, not before the awaits above, so a config applied meanwhile is not lost.
    const { config, members } = init();
    this.send({ type: 'init', workerId: this.#spec.id, secret: this.#secret, config, members });
  }

  /** Sends a message over IPC; a process that is going away is left to its 'exit'. */
  send(message: CoordinatorMessage): void {
    const child = this.#child;
    if (child === undefined || !child.connected || this.#exit !== undefined) return;
    const onError = (err: Error | null): void => {
      if (err !== null && this.#exit === undefined) this.#log.warn(`could not send '${message.type}' to ${this.#spec.id}`, err.message);
    };
    try {
      child.send(message, onError);
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Sends a signal unless the process has exited. */
  signal(signal: NodeJS.Signals): void {
    if (this.#child === undefined || this.#exit !== undefined) return;
    try {
      this.#child.kill(signal);
    } catch (err) {
      this.#log.warn(`could not send ${signal} to ${this.#spec.id} (pid ${this.#pid ?? '?'})`, err);
    }
  }

  /**
   * Stops the process and resolves once it has exited: `/kill` when it is ready (SIGTERM
   * when it is not, as it has no endpoint yet), SIGTERM when /kill is refused or the
   * process is still there after half of `killTimeoutMs`, SIGKILL after `killTimeoutMs`.
   * A second call returns the same promise.
   */
  stop(killTimeoutMs: number): Promise<StopOutcome> {
    // Never started: nothing will ever exit, so settle `exited` here.
    if (!this.#started) this.#neverStarted(new WorkerStartError(`${this.#spec.id} was stopped before it was started`));
    this.#stopping ??= this.#stopNow(killTimeoutMs);
    return this.#stopping;
  }

  async #stopNow(killTimeoutMs: number): Promise<StopOutcome> {
    const id = this.#spec.id;
    if (this.#child === undefined || this.#exit !== undefined) {
      await this.exited;
      return 'exited';
    }
    this.#log.info(`stopping ${id}`);
    let answered: { persisted: boolean; pending: number } | undefined;
    let terminated = false;
    let killed = false;
    const terminate = (why: string): void => {
      if (terminated || this.#exit !== undefined) return;
      terminated = true;
      this.#log.info(`${id} ${why}: sending SIGTERM`);
      this.signal('SIGTERM');
    };
    const abort = new AbortController();
    const termTimer = setTimeout(() => terminate(`is still running ${killTimeoutMs / 2000} s after it was asked to stop`), killTimeoutMs / 2);
    const killTimer = setTimeout(() => {
      if (this.#exit !== undefined) return;
      killed = true;
      this.#log.error(`${id} did not stop within ${killTimeoutMs / 1000} s: killed (SIGKILL)`);
      this.signal('SIGKILL');
    }, killTimeoutMs);
    try {
      if (this.#readyAt !== undefined) {
        // Not awaited: whatever it answers, the exit is what we wait for.
        requestKill(this.#spec.url, this.#secret, { timeoutMs: killTimeoutMs, signal: abort.signal }).then(
          (answer) => {
            if (answer.kind === 'accepted') answered = answer;
            // Usually it is stopping already (Ctrl-C reaches the whole process group) and closed its connections.
            else if (!abort.signal.aborted) terminate(`did not take /kill (${answer.reason})`);
          },
          (err: unknown) => this.#log.error(`asking ${id} to stop failed unexpectedly`, err),
        );
      } else {
        terminate('is not serving yet');
      }
      const exit = await this.exited;
      const outcome: StopOutcome = killed ? 'killed' : answered !== undefined ? (answered.persisted ? 'persisted' : 'kept') : terminated ? 'terminated' : 'exited';
      if (outcome === 'persisted') this.#log.info(`${id} stopped (persisted)`);
      else if (outcome === 'kept') this.#log.warn(`${id} stopped with ${answered!.pending} id(s) not persisted in time: they wait in its write-ahead log, for its next start or another worker`);
      else if (outcome !== 'killed') this.#log.info(`${id} stopped (${describeExit(exit)})`);
      return outcome;
    } finally {
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      abort.abort();
    }
  }

  async #openLog(): Promise<FileHandle | undefined> {
    const file = this.#logFile;
    if (file === undefined) return undefined;
    try {
      // The worker's log holds ids: owner-only like the data (README), an older 0644 one narrowed.
      await mkdir(path.dirname(file), { recursive: true, mode: DATA_DIR_MODE });
      const handle = await open(file, 'a', DATA_FILE_MODE);
      tightenFileMode(handle.fd);
      return handle;
    } catch (err) {
      // Without descriptors the fork fails too: let the caller retry rather than lose the log.
      if (ownResourceErrorCode(err) !== undefined) {
        this.#neverStarted(err);
        throw err;
      }
      this.#log.warn(`cannot open ${file}: ${this.#spec.id} logs to the coordinator's output instead`, err);
      return undefined;
    }
  }

  #onMessage(message: unknown): void {
    const id = this.#spec.id;
    if (!isWorkerMessage(message)) {
      this.#log.warn(`${id} sent an unknown message`, message);
      return;
    }
    if (message.type === 'fatal') {
      this.#fatal = message.message;
      this.#log.error(`${id} could not start: ${message.message}`);
      return;
    }
    if (this.#readyAt !== undefined || this.#exit !== undefined) return;
    this.#readyAt = Date.now();
    const where = message.url.replace(/\/+$/, '') === this.#spec.url ? '' : ` (serving ${message.url})`;
    this.#log.info(`${id} is ready${where}`);
    this.#resolveReady();
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#exit !== undefined) return;
    this.#exit = { code, signal, fatal: this.#fatal };
    this.#rejectReady(new WorkerStartError(`${this.#spec.id} exited (${describeExit(this.#exit)}) before it was ready${this.#fatal === undefined ? '' : `: ${this.#fatal}`}`));
    this.#resolveExited(this.#exit);
  }

  #neverStarted(err: unknown): void {
    if (this.#exit !== undefined) return;
    this.#exit = { code: null, signal: null, fatal: undefined };
    this.#rejectReady(new WorkerStartError(`${this.#spec.id} could not be spawned: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
    this.#resolveExited(this.#exit);
  }
}
