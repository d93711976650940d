import path from 'node:path';
import type { Config, WorkerSpec } from '../shared/config.js';
import type { MemberInfo } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { HealthMonitor } from './health.js';
import { healthField, uptimeSince, type LastExit, type ManagedWorker, type WorkerStateName, type WorkerStatus } from './managed-worker.js';
import { describeOwnResourceError, ownResourceErrorCode } from './resource-errors.js';
import { RespawnBackoff } from './respawn.js';
import type { HealthCheck } from './worker-client.js';
import { describeExit, WorkerProcess, type WorkerExit } from './worker-process.js';

/** Options of a LocalWorker. */
export interface LocalWorkerOptions {
  readonly spec: WorkerSpec;
  readonly log: Logger;
  /** The config in force: log folder, timings, and what a new process is given. */
  readonly config: () => Config;
  /** The worker script to fork. */
  readonly entry: string;
  /** Node flags for the worker processes. @default WORKER_NODE_ARGS */
  readonly execArgv?: readonly string[];
  /** The coordinator's secret for the workers' control endpoints. */
  readonly secret: string;
  /** Resolves once an earlier worker of the same id (removed, still stopping) has exited: it holds the port. */
  readonly after?: Promise<unknown>;
  /** Something `live` or the status depends on changed. */
  readonly onChange: () => void;
  /** How health checks are made. @default a real `GET /` */
  readonly check?: HealthCheck;
  /** The live membership, for a new process's init message. @default none */
  readonly members?: () => readonly MemberInfo[];
}

/** A local worker's life; every state holds exactly what it needs. */
type LocalState =
  /** Not started yet. */
  | { readonly kind: 'idle' }
  /** Being spawned (`process` undefined while waiting for the port or the log file), or waiting for 'ready'. */
  | { readonly kind: 'starting'; readonly process: WorkerProcess | undefined }
  /** Ready: health-checked; live unless the checks or the forwarder found it unreachable. */
  | { readonly kind: 'up'; readonly process: WorkerProcess; readonly health: HealthMonitor }
  /** Its process died (or could not be spawned): respawned at `until`. */
  | { readonly kind: 'backing-off'; readonly until: number; readonly timer: NodeJS.Timeout }
  /** Asked to stop: waiting for its process to exit. */
  | { readonly kind: 'stopping'; readonly process: WorkerProcess | undefined }
  /** Gone for good. */
  | { readonly kind: 'stopped' };

function seconds(ms: number): string {
  // Two decimals below a second, so the first retries read 0.25 s and 0.50 s rather than rounded.
  return `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)} s`;
}

/**
 * A worker this coordinator spawns on this machine: spawn, wait for 'ready', health-check
 * while up (SIGKILL when hung), respawn with backoff whenever its process dies, stop
 * gracefully on request. Each process is a new WorkerProcess; a failure only ever
 * affects this worker.
 */
export class LocalWorker implements ManagedWorker {
  spec: WorkerSpec;
  readonly #log: Logger;
  readonly #config: () => Config;
  readonly #entry: string;
  readonly #execArgv: readonly string[] | undefined;
  readonly #secret: string;
  readonly #after: Promise<unknown>;
  readonly #onChange: () => void;
  readonly #check: HealthCheck | undefined;
  readonly #members: () => readonly MemberInfo[];
  readonly #backoff = new RespawnBackoff();
  #state: LocalState = { kind: 'idle' };
  #restarts = 0;
  #lastExit: LastExit | null = null;
  #stopped: Promise<void> | undefined;
  #settleFirstStart!: () => void;
  readonly firstStart: Promise<void>;

  constructor(options: LocalWorkerOptions) {
    this.spec = options.spec;
    this.#log = options.log;
    this.#config = options.config;
    this.#entry = options.entry;
    this.#execArgv = options.execArgv;
    this.#secret = options.secret;
    this.#after = options.after ?? Promise.resolve();
    this.#onChange = options.onChange;
    this.#check = options.check;
    this.#members = options.members ?? (() => []);
    this.firstStart = new Promise<void>((resolve) => {
      this.#settleFirstStart = resolve;
    });
  }

  get live(): boolean {
    return this.#state.kind === 'up' && this.#state.health.serving;
  }

  start(): void {
    if (this.#state.kind !== 'idle') return;
    this.#spawn().catch((err: unknown) => this.#log.error(`could not spawn ${this.spec.id}`, err));
  }

  markSuspect(): void {
    if (this.#state.kind === 'up') this.#state.health.markSuspect();
  }

  sendConfig(config: Config): void {
    // A process still starting gets the config in force in its init message.
    if (this.#state.kind === 'up') this.#state.process.send({ type: 'config', config });
    else if (this.#state.kind === 'starting') this.#state.process?.send({ type: 'config', config });
  }

  sendMembers(members: readonly MemberInfo[]): void {
    const state = this.#state;
    const process = state.kind === 'starting' || state.kind === 'up' || state.kind === 'stopping' ? state.process : undefined;
    process?.send({ type: 'members', members });
  }

  status(): WorkerStatus {
    const state = this.#state;
    const process = state.kind === 'starting' || state.kind === 'up' || state.kind === 'stopping' ? state.process : undefined;
    return {
      id: this.spec.id,
      url: this.spec.url,
      local: true,
      state: stateName(state),
      pid: process?.pid ?? null,
      uptime: state.kind === 'up' ? uptimeSince(state.process.readyAt) : null,
      restarts: this.#restarts,
      lastExit: this.#lastExit,
      nextRespawnAt: state.kind === 'backing-off' ? new Date(state.until).toISOString() : null,
      health: healthField(state.kind === 'up' ? state.health.last : undefined),
    };
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stopNow().catch((err: unknown) => {
      this.#log.error(`stopping ${this.spec.id} failed`, err);
    });
    return this.#stopped;
  }

  async #stopNow(): Promise<void> {
    const state = this.#state;
    const process = state.kind === 'starting' || state.kind === 'up' ? state.process : undefined;
    if (state.kind === 'backing-off') clearTimeout(state.timer);
    // Set before anything is awaited, so an exit during the stop is seen as asked for.
    this.#state = { kind: 'stopping', process };
    this.#settleFirstStart();
    this.#onChange();
    try {
      if (state.kind === 'up') await state.health.close();
      if (process !== undefined) await process.stop(this.#config().kill_timeout * 1000);
    } finally {
      this.#state = { kind: 'stopped' };
      this.#onChange();
    }
  }

  /** True while `process` (or, without one, any spawn) is still what this worker is starting. */
  #starting(process?: WorkerProcess): boolean {
    const state = this.#state;
    return state.kind === 'starting' && (process === undefined || state.process === process);
  }

  async #spawn(): Promise<void> {
    this.#state = { kind: 'starting', process: undefined };
    this.#onChange();
    await this.#after;
    if (!this.#starting()) return; // stopped meanwhile
    const config = this.#config();
    const process = new WorkerProcess({
      spec: this.spec,
      entry: this.#entry,
      ...(this.#execArgv === undefined ? {} : { execArgv: this.#execArgv }),
      logFile: path.join(config.worker_logs, `${this.spec.id}.log`),
      secret: this.#secret,
      log: this.#log,
    });
    this.#state = { kind: 'starting', process };
    try {
      await process.start(() => ({ config: this.#config(), members: this.#members() }));
    } catch (err) {
      if (this.#starting(process)) this.#couldNotSpawn(err);
      return;
    }
    this.#log.info(`spawned ${this.spec.id} (pid ${process.pid})`);
    process.ready.then(() => this.#onReady(process), () => {});
    process.exited.then((exit) => this.#onExit(process, exit)).catch((err: unknown) => this.#log.error(`handling the exit of ${this.spec.id} failed`, err));
  }


  #onReady(process: WorkerProcess): void {
    if (!this.#starting(process)) return;
    const health = new HealthMonitor({
      id: this.spec.id,
      url: this.spec.url,
      log: this.#log,
      intervalMs: () => this.#config().health_check * 1000,
      trusted: true,
      onChange: this.#onChange,
      onHung: (detail) => {
        this.#log.error(`${detail}, killing it`);
        // Its exit takes it from here: a respawn with backoff.
        process.signal('SIGKILL');
      },
      ...(this.#check === undefined ? {} : { check: this.#check }),
    });
    this.#state = { kind: 'up', process, health };
    health.start();
    this.#settleFirstStart();
    this.#onChange();
  }

  #onExit(process: WorkerProcess, exit: WorkerExit): void {
    const state = this.#state;
    // A stop waits for its own process and reports it.
    if ((state.kind !== 'starting' && state.kind !== 'up') || state.process !== process) return;
    if (state.kind === 'up') {
      state.health.close().catch((err: unknown) => this.#log.error(`stopping the health checks of ${this.spec.id} failed`, err));
    }
    const how = describeExit(exit);
    if (exit.fatal !== undefined) this.#log.warn(`${this.spec.id} exited (${how})`);
    else this.#log.error(`${this.spec.id} exited unexpectedly (${how})`);
    this.#lastExit = { at: new Date().toISOString(), code: exit.code, signal: exit.signal, reason: exit.fatal ?? how };
    const readyAt = process.readyAt;
    this.#backOff(readyAt === undefined ? undefined : Date.now() - readyAt);
  }

  #couldNotSpawn(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const code = ownResourceErrorCode(err);
    if (code !== undefined) {
      // The coordinator's problem, not the worker's: say so, and try again later.
      this.#log.error(`cannot spawn ${this.spec.id} (${message}): ${describeOwnResourceError(code)}; the worker is not at fault`);
    } else {
      this.#log.error(`could not spawn ${this.spec.id}`, err);
    }
    this.#lastExit = { at: new Date().toISOString(), code: null, signal: null, reason: code === undefined ? `could not spawn: ${message}` : `the coordinator could not spawn it: ${message}` };
    this.#backOff(undefined);
  }

  #backOff(readyForMs: number | undefined): void {
    const delay = this.#backoff.failed(readyForMs);
    this.#log.warn(`respawning ${this.spec.id} in ${seconds(delay)} (failure ${this.#backoff.failures} in a row)`);
    const timer = setTimeout(() => {
      if (this.#state.kind !== 'backing-off') return;
      this.#restarts += 1;
      this.#spawn().catch((err: unknown) => this.#log.error(`could not respawn ${this.spec.id}`, err));
    }, delay);
    // The HTTP server keeps the coordinator alive; a pending respawn alone should not.
    timer.unref();
    this.#state = { kind: 'backing-off', until: Date.now() + delay, timer };
    this.#settleFirstStart();
    this.#onChange();
  }
}

function stateName(state: LocalState): WorkerStateName {
  switch (state.kind) {
    case 'idle':
      return 'starting';
    case 'up':
      return state.health.serving ? 'up' : 'suspect';
    default:
      return state.kind;
  }
}
