import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import axios from 'axios';
import type { Config, WorkerSpec } from '../shared/config.js';
import { SECRET_HEADER } from '../shared/control-secret.js';
import { isWorkerMessage, type CoordinatorMessage } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';

/** Where a worker is in its life, as the status route shows it. */
export type WorkerState = 'starting' | 'up' | 'down' | 'stopping' | 'backoff';

/** One row of `Supervisor.workers()`. */
export interface WorkerStatus {
  readonly id: string;
  readonly url: string;
  readonly state: WorkerState;
  /** The running process, when there is one (local workers only). */
  readonly pid?: number;
  /** How many times the worker was respawned after dying. */
  readonly restarts: number;
}

/** What happened to a worker process when it exited. */
export interface WorkerExit {
  readonly id: string;
  readonly pid: number | undefined;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when the supervisor asked it to stop (removed from the config, or close()). */
  readonly expected: boolean;
}

/** Events a Supervisor emits; listeners are for tests and the status route, never required. */
export interface SupervisorEvents {
  /** The set of live workers changed; the argument is what `liveWorkers()` now returns. */
  live: [workers: readonly WorkerSpec[]];
  /** A local worker sent 'ready' (or a remote one passed its first health check). */
  ready: [worker: WorkerSpec];
  /** A local worker process exited. */
  exit: [info: WorkerExit];
}

/** Options of a Supervisor. */
export interface SupervisorOptions {
  /** Where the supervisor reports spawns, exits, respawns and stops. */
  readonly log: Logger;
  /** Absolute path of the built worker script (`dist/worker/main.js`). */
  readonly workerEntry: string;
}

/**
 * Node flags for the workers, e.g. `COUNTAPP_WORKER_NODE_ARGS='--cpu-prof --cpu-prof-dir=prof'`
 * to profile them (Node refuses --cpu-prof in NODE_OPTIONS). The coordinator's own flags
 * are not passed on.
 */
const WORKER_NODE_ARGS = (process.env.COUNTAPP_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** A worker that stayed ready this long has recovered: its next crash starts the backoff afresh. */
const STABLE_MS = 10_000;
/** start() and apply() stop waiting for slow starters after this; they keep starting in the background. */
const START_WAIT_MS = 30_000;
/** How soon a worker the forwarder could not reach is checked again. */
const SUSPECT_CHECK_MS = 100;
/** A ready worker failing this many checks in a row, over at least HUNG_MS, is killed as hung. */
const HUNG_CHECKS = 5;
const HUNG_MS = 5_000;

/** One process of a local worker. A process is never reused: a respawn is a new Run. */
interface Run {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  ready: boolean;
  readyAt: number | undefined;
  /** The message of the worker's 'fatal' report, if it sent one. */
  fatal: string | undefined;
  exited: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Resolves once the process has exited (or failed to spawn at all). */
  readonly exit: Promise<void>;
  readonly markExited: () => void;
}

/** One desired worker and everything the supervisor tracks about it. */
interface Slot {
  spec: WorkerSpec;
  state: WorkerState;
  run: Run | undefined;
  restarts: number;
  /** Consecutive failed runs, for the backoff. */
  failures: number;
  /** The forwarder or a health check found it unreachable; out of the live set until a check passes. */
  suspect: boolean;
  suspectAt: number;
  healthFails: number;
  failingSince: number | undefined;
  healthTimer: NodeJS.Timeout | undefined;
  healthRunning: boolean;
  /** A quick re-check was asked for (markSuspect) and has not started yet. */
  checkSoon: boolean;
  backoffTimer: NodeJS.Timeout | undefined;
  stopRequested: boolean;
  stopping: Promise<void> | undefined;
  /** Settles when the first start succeeded or failed, or the slot was stopped. */
  readonly firstStart: Promise<void>;
  readonly settleFirstStart: () => void;
}

function newSlot(spec: WorkerSpec): Slot {
  let settle!: () => void;
  const firstStart = new Promise<void>((resolve) => {
    settle = resolve;
  });
  return {
    spec,
    state: 'starting',
    run: undefined,
    restarts: 0,
    failures: 0,
    suspect: false,
    suspectAt: 0,
    healthFails: 0,
    failingSince: undefined,
    healthTimer: undefined,
    healthRunning: false,
    checkSoon: false,
    backoffTimer: undefined,
    stopRequested: false,
    stopping: undefined,
    firstStart,
    settleFirstStart: settle,
  };
}

function newRun(child: ChildProcess): Run {
  let markExited!: () => void;
  const exit = new Promise<void>((resolve) => {
    markExited = resolve;
  });
  return { child, pid: child.pid, ready: false, readyAt: undefined, fatal: undefined, exited: false, code: null, signal: null, exit, markExited };
}

function sameSpec(a: WorkerSpec, b: WorkerSpec): boolean {
  return a.id === b.id && a.url === b.url && a.local === b.local && a.host === b.host && a.port === b.port;
}

function normalizeUrl(url: string): string {
  return url.replace(/\/+$/, '');
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal !== null) return `signal ${signal}`;
  return code === null ? 'no exit code' : `code ${code}`;
}

function describeRequestError(err: unknown): string {
  if (axios.isAxiosError(err)) return err.code ?? err.message;
  return err instanceof Error ? err.message : String(err);
}

function isTimeout(err: unknown): boolean {
  return axios.isAxiosError(err) && (err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT');
}

function seconds(ms: number): string {
  // Two decimals below a second, so the first retries read 0.25 s and 0.50 s rather than rounded.
  return `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)} s`;
}

/**
 * Keeps the running workers equal to the desired ones (the config's): spawns local
 * workers, respawns the ones that die (with exponential backoff), health-checks every
 * worker, kills hung ones, stops removed ones gracefully, and offers the forwarder the
 * live set in O(1). A worker that keeps failing only ever affects itself.
 */
export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly #log: Logger;
  readonly #workerEntry: string;
  /** Proves to a worker's control endpoints that a call comes from us; never leaves this process except over IPC. */
  readonly #secret = randomBytes(32).toString('hex');
  /** Cancels in-flight health checks on close(). */
  readonly #abort = new AbortController();
  #config: Config | undefined;
  /** Desired workers by id. */
  readonly #slots = new Map<string, Slot>();
  /** The same slots by URL, for markSuspect. */
  readonly #byUrl = new Map<string, Slot>();
  /** Slots removed from the config that are still stopping. */
  readonly #retiring = new Set<Slot>();
  /** Every process not yet exited, whatever its slot: close() waits for all of them. */
  readonly #running = new Set<Run>();
  #live: readonly WorkerSpec[] = Object.freeze([]);
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: SupervisorOptions) {
    super();
    this.#log = options.log;
    this.#workerEntry = options.workerEntry;
  }

  /**
   * Reconciles with `config` for the first time. Resolves once every local worker has
   * sent 'ready' or failed its first start, or after 30 s (the slow ones keep starting).
   */
  async start(config: Config): Promise<void> {
    await this.apply(config);
  }

  /**
   * Reconciles after a config change: spawns added local workers, stops removed ones
   * gracefully, and sends the new config to every running worker so timings change at
   * once. Remote workers are only health-checked. Resolves when the added workers have
   * started (bounded by 30 s) and the removed ones have exited.
   */
  async apply(config: Config): Promise<void> {
    if (this.#closing) return;
    this.#config = config;
    const waits: Promise<unknown>[] = [];

    // Everything up to the first await is synchronous, so two overlapping apply() calls
    // cannot interleave their bookkeeping; only their waiting overlaps.
    const desired = new Map(config.workers.map((spec) => [spec.id, spec]));
    for (const [id, slot] of this.#slots) {
      const next = desired.get(id);
      if (next !== undefined && sameSpec(next, slot.spec)) {
        slot.spec = next;
        continue;
      }
      this.#slots.delete(id);
      if (this.#byUrl.get(slot.spec.url) === slot) this.#byUrl.delete(slot.spec.url);
      this.#log.info(`${id} was removed from the config`);
      waits.push(this.#retire(slot));
    }

    const added: Slot[] = [];
    for (const spec of config.workers) {
      if (this.#slots.has(spec.id)) continue;
      const slot = newSlot(spec);
      this.#slots.set(spec.id, slot);
      this.#byUrl.set(spec.url, slot);
      added.push(slot);
    }

    // New workers get the config in their init message; the others need it now.
    for (const slot of this.#slots.values()) {
      const run = slot.run;
      if (added.includes(slot) || run === undefined || run.exited || slot.stopRequested) continue;
      this.#send(slot, run, { type: 'config', config });
    }

    for (const slot of added) {
      if (slot.spec.local) {
        this.#spawn(slot).catch((err: unknown) => this.#log.error(`could not spawn ${slot.spec.id}`, err));
      } else {
        this.#log.info(`${slot.spec.id} (${slot.spec.url}) is remote: health-checking it, not spawning it`);
        this.#scheduleHealth(slot, 0);
      }
    }
    this.#rebuildLive();

    const starting = added.filter((slot) => slot.spec.local);
    if (starting.length > 0) waits.push(this.#waitForStarts(starting));
    await Promise.all(waits);
  }

  /**
   * The workers a request may go to, in config order. Called on every request, so it
   * returns an array rebuilt only when a worker's state changes; do not mutate it.
   */
  liveWorkers(): readonly WorkerSpec[] {
    return this.#live;
  }

  /**
   * The forwarder could not reach the worker at `url`: leave it out of the live set until
   * a health check passes, and check it again soon. Unknown URLs are ignored.
   */
  markSuspect(url: string): void {
    if (this.#closing) return;
    const slot = this.#byUrl.get(normalizeUrl(url));
    if (slot === undefined || slot.stopRequested) return;
    if (!slot.suspect) {
      slot.suspect = true;
      slot.suspectAt = Date.now();
      this.#log.warn(`${slot.spec.id} is suspect: a forwarded request could not reach it; checking it again`);
      this.#rebuildLive();
    }
    // Only the first report before the re-check reschedules it, or a burst of failing
    // requests would keep pushing the check back.
    if (slot.checkSoon) return;
    slot.checkSoon = true;
    this.#scheduleHealth(slot, SUSPECT_CHECK_MS);
  }

  /** Every desired worker (in config order), then removed ones still stopping: for the status route. */
  workers(): WorkerStatus[] {
    const slots: Slot[] = [];
    for (const spec of this.#config?.workers ?? []) {
      const slot = this.#slots.get(spec.id);
      if (slot !== undefined) slots.push(slot);
    }
    slots.push(...this.#retiring);
    return slots.map((slot) => {
      // A suspect worker is not served to: show it as down rather than up.
      const state: WorkerState = slot.state === 'up' && slot.suspect ? 'down' : slot.state;
      const pid = slot.run !== undefined && !slot.run.exited ? slot.run.pid : undefined;
      return pid === undefined
        ? { id: slot.spec.id, url: slot.spec.url, state, restarts: slot.restarts }
        : { id: slot.spec.id, url: slot.spec.url, state, pid, restarts: slot.restarts };
    });
  }

  /**
   * Stops health checks and respawns, then stops every worker gracefully in parallel and
   * resolves once every child process has exited. A second call returns the same promise.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    try {
      this.#abort.abort();
      for (const slot of [...this.#slots.values(), ...this.#retiring]) {
        clearTimeout(slot.healthTimer);
        clearTimeout(slot.backoffTimer);
        slot.healthTimer = undefined;
        slot.backoffTimer = undefined;
      }
    } catch (err) {
      this.#log.error('could not cancel the supervisor timers', err);
    }
    try {
      const stops = [...this.#slots.values()].map((slot) => this.#stop(slot));
      const retiring = [...this.#retiring].map((slot) => slot.stopping ?? Promise.resolve());
      await Promise.all([...stops, ...retiring]);
    } catch (err) {
      this.#log.error('stopping the workers failed', err);
    }
    try {
      // Every stop waited for its own process; this only catches a process no slot owns
      // any more, so nothing is ever left behind.
      for (const run of this.#running) {
        this.#log.warn(`process ${run.pid ?? '?'} is still running after the stop: killing it`);
        this.#signal(run, 'SIGKILL');
      }
      await Promise.all([...this.#running].map((run) => run.exit));
    } catch (err) {
      this.#log.error('waiting for the worker processes failed', err);
    }
    this.#rebuildLive();
  }

  /** Removes a slot that left the config: stops it, keeping it visible while it does. */
  #retire(slot: Slot): Promise<void> {
    this.#retiring.add(slot);
    const stopped = this.#stop(slot);
    return stopped.finally(() => {
      this.#retiring.delete(slot);
    });
  }

  async #spawn(slot: Slot): Promise<void> {
    const spec = slot.spec;
    slot.state = 'starting';
    // The same worker re-added while its previous self is still stopping: it holds the port.
    for (const old of this.#retiring) {
      if (old.spec.id === spec.id && old.stopping !== undefined) await old.stopping;
    }
    const config = this.#config!;
    const logFile = path.join(config.worker_logs, `${spec.id}.log`);
    let handle: FileHandle | undefined;
    try {
      await mkdir(config.worker_logs, { recursive: true });
      handle = await open(logFile, 'a');
    } catch (err) {
      this.#log.warn(`cannot open ${logFile}: ${spec.id} logs to the coordinator's output instead`, err);
    }
    if (this.#closing || slot.stopRequested) {
      await handle?.close();
      return;
    }

    let child: ChildProcess;
    try {
      const out = handle?.fd ?? 'inherit';
      child = fork(this.#workerEntry, [], { stdio: ['ignore', out, out, 'ipc'], execArgv: WORKER_NODE_ARGS, detached: false });
    } catch (err) {
      await handle?.close();
      this.#log.error(`could not spawn ${spec.id}`, err);
      this.#afterFailedRun(slot, undefined);
      return;
    }
    const run = newRun(child);
    slot.run = run;
    this.#running.add(run);
    child.on('message', (message: unknown) => this.#onMessage(slot, run, message));
    child.on('exit', (code, signal) => this.#onExit(slot, run, code, signal));
    child.on('error', (err) => this.#onChildError(slot, run, err));
    // The child has its own copy of the descriptor now.
    handle?.close().catch((err: unknown) => this.#log.warn(`could not close ${logFile} in the coordinator`, err));
    if (run.pid === undefined) return; // spawning failed: the 'error' event reports it

    this.#log.info(`spawned ${spec.id} (pid ${run.pid})`);
    const index = config.workers.findIndex((worker) => worker.id === spec.id);
    const phase = config.workers.length > 0 && index >= 0 ? index / config.workers.length : 0;
    this.#send(slot, run, { type: 'init', workerId: spec.id, secret: this.#secret, config, phase });
  }

  #send(slot: Slot, run: Run, message: CoordinatorMessage): void {
    if (!run.child.connected) return;
    const onError = (err: Error | null): void => {
      // The process is going away; its 'exit' handler takes it from here.
      if (err !== null && !run.exited) this.#log.warn(`could not send '${message.type}' to ${slot.spec.id}`, err.message);
    };
    try {
      run.child.send(message, onError);
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #onMessage(slot: Slot, run: Run, message: unknown): void {
    const id = slot.spec.id;
    if (!isWorkerMessage(message)) {
      this.#log.warn(`${id} sent an unknown message`, message);
      return;
    }
    if (message.type === 'fatal') {
      run.fatal = message.message;
      this.#log.error(`${id} could not start: ${message.message}`);
      return;
    }
    if (run.ready || run.exited || slot.run !== run) return;
    run.ready = true;
    run.readyAt = Date.now();
    if (slot.stopRequested || this.#closing) return;
    slot.state = 'up';
    slot.suspect = false;
    slot.checkSoon = false;
    slot.healthFails = 0;
    slot.failingSince = undefined;
    const where = normalizeUrl(message.url) === slot.spec.url ? '' : ` (serving ${message.url})`;
    this.#log.info(`${id} is ready${where}`);
    slot.settleFirstStart();
    this.#rebuildLive();
    this.#emitSafe('ready', slot.spec);
    this.#scheduleHealth(slot, this.#config!.health_check * 1000);
  }

  #onChildError(slot: Slot, run: Run, err: Error): void {
    if (run.pid === undefined && !run.exited) {
      // The process never started, and 'exit' may never come: treat it as a failed run.
      this.#log.error(`could not spawn ${slot.spec.id}`, err);
      this.#onExit(slot, run, null, null);
      return;
    }
    // A failed kill or send: the process's own exit (if any) is handled by 'exit'.
    this.#log.warn(`${slot.spec.id}: ${err.message}`);
  }

  #onExit(slot: Slot, run: Run, code: number | null, signal: NodeJS.Signals | null): void {
    if (run.exited) return;
    run.exited = true;
    run.code = code;
    run.signal = signal;
    this.#running.delete(run);
    run.markExited();
    const expected = slot.stopRequested || this.#closing;
    this.#emitSafe('exit', { id: slot.spec.id, pid: run.pid, code, signal, expected });
    if (expected) return; // #stop logs and settles the rest

    const id = slot.spec.id;
    if (run.pid !== undefined) {
      if (run.fatal !== undefined) this.#log.warn(`${id} exited (${describeExit(code, signal)})`);
      else this.#log.error(`${id} exited unexpectedly (${describeExit(code, signal)})`);
    }
    this.#afterFailedRun(slot, run);
  }

  /** A run ended without being asked to: mark the slot down and schedule a respawn with backoff. */
  #afterFailedRun(slot: Slot, run: Run | undefined): void {
    if (slot.run === run) slot.run = undefined;
    clearTimeout(slot.healthTimer);
    slot.healthTimer = undefined;
    slot.healthFails = 0;
    slot.failingSince = undefined;
    slot.suspect = false;
    slot.state = 'down';
    slot.settleFirstStart();
    this.#rebuildLive();
    // Removed from the config meanwhile, or shutting down: nothing to bring back.
    if (this.#closing || slot.stopRequested || this.#slots.get(slot.spec.id) !== slot) return;

    const stayedUp = run?.readyAt !== undefined && Date.now() - run.readyAt >= STABLE_MS;
    slot.failures = stayedUp ? 1 : slot.failures + 1;
    const delay = Math.min(FIRST_BACKOFF_MS * 2 ** (slot.failures - 1), MAX_BACKOFF_MS);
    this.#log.warn(`respawning ${slot.spec.id} in ${seconds(delay)} (failure ${slot.failures} in a row)`);
    slot.state = 'backoff';
    slot.backoffTimer = setTimeout(() => {
      slot.backoffTimer = undefined;
      if (this.#closing || slot.stopRequested) return;
      slot.restarts += 1;
      this.#spawn(slot).catch((err: unknown) => this.#log.error(`could not respawn ${slot.spec.id}`, err));
    }, delay);
    // The HTTP server keeps the coordinator alive; a pending respawn alone should not.
    slot.backoffTimer.unref();
  }

  /** Stops a worker gracefully; every caller gets the same promise. */
  #stop(slot: Slot): Promise<void> {
    if (slot.stopping === undefined) {
      // Set before anything else runs so an 'exit' during the stop is seen as expected.
      slot.stopRequested = true;
      slot.stopping = this.#stopNow(slot).catch((err: unknown) => {
        this.#log.error(`stopping ${slot.spec.id} failed`, err);
      });
    }
    return slot.stopping;
  }

  async #stopNow(slot: Slot): Promise<void> {
    const id = slot.spec.id;
    clearTimeout(slot.backoffTimer);
    clearTimeout(slot.healthTimer);
    slot.backoffTimer = undefined;
    slot.healthTimer = undefined;
    slot.settleFirstStart();
    const run = slot.run;
    if (!slot.spec.local || run === undefined || run.exited) {
      // Remote, or nothing running (in backoff, or a spawn in progress that will see stopRequested).
      slot.state = 'down';
      this.#rebuildLive();
      return;
    }
    slot.state = 'stopping';
    this.#rebuildLive();

    const config = this.#config!;
    const timeoutMs = config.kill_timeout * 1000;
    this.#log.info(`stopping ${id}`);
    let killed = false;
    const killTimer = setTimeout(() => {
      killed = true;
      this.#signal(run, 'SIGKILL');
    }, timeoutMs);
    let persisted = false;
    try {
      if (run.ready) {
        try {
          // The worker persists, answers, then exits.
          const res = await axios.post(`${slot.spec.url}/kill`, null, {
            headers: { [SECRET_HEADER]: this.#secret },
            timeout: timeoutMs,
            proxy: false,
            maxRedirects: 0,
            validateStatus: () => true,
          });
          if (res.status >= 200 && res.status < 300) {
            persisted = true;
          } else if (!run.exited) {
            this.#log.warn(`${id} answered /kill with HTTP ${res.status}: sending SIGTERM`);
            this.#signal(run, 'SIGTERM');
          }
        } catch (err) {
          if (!run.exited && !killed) {
            // Usually it is stopping already (Ctrl-C reaches the whole process group) and closed its connections.
            this.#log.info(`${id} did not take /kill (${describeRequestError(err)}), probably stopping already: sending SIGTERM too`);
            this.#signal(run, 'SIGTERM');
          }
        }
      } else {
        // Not serving yet, so no /kill endpoint: the worker handles SIGTERM the same way.
        this.#signal(run, 'SIGTERM');
      }
      await run.exit;
    } finally {
      clearTimeout(killTimer);
    }
    if (slot.run === run) slot.run = undefined;
    slot.state = 'down';
    this.#rebuildLive();
    if (killed) this.#log.error(`${id} did not stop within ${config.kill_timeout} s: killed`);
    else if (persisted) this.#log.info(`${id} stopped (persisted)`);
    else this.#log.info(`${id} stopped (${describeExit(run.code, run.signal)})`);
  }

  #signal(run: Run, signal: NodeJS.Signals): void {
    if (run.exited) return;
    try {
      run.child.kill(signal);
    } catch (err) {
      this.#log.warn(`could not send ${signal} to process ${run.pid ?? '?'}`, err);
    }
  }

  /** Schedules the next health check of one worker; checks of one worker never overlap. */
  #scheduleHealth(slot: Slot, delayMs: number): void {
    if (this.#closing || slot.stopRequested || slot.healthRunning) return;
    clearTimeout(slot.healthTimer);
    slot.healthTimer = setTimeout(() => {
      slot.healthTimer = undefined;
      this.#checkHealth(slot).catch((err: unknown) => this.#log.error(`health check of ${slot.spec.id} failed unexpectedly`, err));
    }, delayMs);
    slot.healthTimer.unref();
  }

  async #checkHealth(slot: Slot): Promise<void> {
    const run = slot.run;
    slot.checkSoon = false;
    // A local worker is checked only while ready; its next 'ready' restarts the checks.
    if (slot.spec.local && (run === undefined || !run.ready || run.exited)) return;
    if (this.#closing || slot.stopRequested) return;
    const healthCheck = this.#config!.health_check;
    slot.healthRunning = true;
    const startedAt = Date.now();
    let ok = false;
    let timedOut = false;
    let reason: string;
    try {
      const res = await axios.get(`${slot.spec.url}/`, {
        timeout: Math.min(2000, healthCheck * 1000 * 2),
        validateStatus: () => true,
        signal: this.#abort.signal,
        proxy: false,
        maxRedirects: 0,
        responseType: 'text',
      });
      ok = res.status === 200;
      reason = `HTTP ${res.status}`;
    } catch (err) {
      reason = describeRequestError(err);
      timedOut = isTimeout(err);
    } finally {
      slot.healthRunning = false;
    }
    if (this.#closing || slot.stopRequested || this.#slots.get(slot.spec.id) !== slot) return;
    if (slot.run !== run) {
      // The answer is about a process that is gone. Its successor's 'ready' could not
      // schedule a check while this one ran, so keep the chain going.
      this.#scheduleHealth(slot, this.#config!.health_check * 1000);
      return;
    }

    if (ok) {
      this.#healthPassed(slot, startedAt);
    } else if (this.#healthFailed(slot, run, reason, timedOut, startedAt)) {
      return; // killed as hung: the exit handler respawns it
    }
    const next = slot.checkSoon ? SUSPECT_CHECK_MS : this.#config!.health_check * 1000;
    this.#scheduleHealth(slot, next);
  }

  #healthPassed(slot: Slot, startedAt: number): void {
    const id = slot.spec.id;
    slot.healthFails = 0;
    slot.failingSince = undefined;
    // A check that began before the forwarder's report cannot clear it.
    if (slot.suspect && startedAt >= slot.suspectAt) {
      slot.suspect = false;
      this.#log.info(`${id} answers its health check again`);
    }
    if (!slot.spec.local && slot.state !== 'up') {
      this.#log.info(slot.state === 'starting' ? `${id} is up` : `${id} is reachable again`);
      slot.state = 'up';
      slot.settleFirstStart();
      this.#emitSafe('ready', slot.spec);
    }
    this.#rebuildLive();
  }

  /** Returns true when the worker was killed as hung. */
  #healthFailed(slot: Slot, run: Run | undefined, reason: string, timedOut: boolean, startedAt: number): boolean {
    const id = slot.spec.id;
    slot.healthFails += 1;
    slot.failingSince ??= startedAt;
    if (!slot.spec.local) {
      if (slot.state !== 'down') this.#log.warn(`${id} failed its health check (${reason}): not forwarding to it until it answers`);
      slot.state = 'down';
      slot.settleFirstStart();
      this.#rebuildLive();
      return false;
    }
    // A refused or broken connection means it is not serving; one slow answer may be a busy moment.
    if (!slot.suspect && (!timedOut || slot.healthFails >= 2)) {
      slot.suspect = true;
      slot.suspectAt = Date.now();
      this.#log.warn(`${id} failed its health check (${reason}): not forwarding to it until it answers`);
      this.#rebuildLive();
    }
    const failingFor = Date.now() - slot.failingSince;
    const windowMs = Math.max(HUNG_CHECKS * this.#config!.health_check * 1000, HUNG_MS);
    if (run !== undefined && run.ready && slot.healthFails >= HUNG_CHECKS && failingFor >= windowMs) {
      this.#log.error(`${id} has failed its health checks for ${seconds(failingFor)} (${slot.healthFails} in a row, last: ${reason}): it looks hung, killing it`);
      this.#signal(run, 'SIGKILL');
      return true;
    }
    return false;
  }

  /** Waits for the first start of each slot, but not for longer than START_WAIT_MS. */
  async #waitForStarts(slots: readonly Slot[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), START_WAIT_MS);
      timer.unref();
    });
    try {
      const late = await Promise.race([Promise.all(slots.map((slot) => slot.firstStart)).then(() => false), timedOut]);
      if (late) {
        const waiting = slots.filter((slot) => slot.state === 'starting').map((slot) => slot.spec.id);
        if (waiting.length > 0) this.#log.warn(`still waiting for ${waiting.join(', ')} after ${START_WAIT_MS / 1000} s; going on without them`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #rebuildLive(): void {
    const live: WorkerSpec[] = [];
    if (!this.#closing) {
      for (const spec of this.#config?.workers ?? []) {
        const slot = this.#slots.get(spec.id);
        if (slot !== undefined && this.#isLive(slot)) live.push(slot.spec);
      }
    }
    const before = this.#live;
    if (live.length === before.length && live.every((spec, i) => spec === before[i])) return;
    this.#live = Object.freeze(live);
    this.#emitSafe('live', this.#live);
  }

  #isLive(slot: Slot): boolean {
    if (slot.state !== 'up' || slot.suspect || slot.stopRequested) return false;
    if (!slot.spec.local) return true;
    return slot.run !== undefined && slot.run.ready && !slot.run.exited;
  }

  /** A listener's exception must not break the supervisor's bookkeeping. */
  #emitSafe<K extends keyof SupervisorEvents>(event: K, ...args: SupervisorEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: SupervisorEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log.error(`a '${event}' listener of the supervisor threw`, err);
    }
  }
}
