import { randomBytes } from 'node:crypto';
import type { Config, WorkerSpec } from '../shared/config.js';
import { readClusterSecret } from '../shared/control-secret.js';
import type { MemberInfo } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { LocalWorker } from './local-worker.js';
import type { ManagedWorker, WorkerStateName, WorkerStatus } from './managed-worker.js';
import { RemoteWorker } from './remote-worker.js';

export type { WorkerStateName, WorkerStatus } from './managed-worker.js';

/** start() and apply() stop waiting for slow starters after this; they keep starting in the background. */
export const START_WAIT_MS = 30_000;

/** One worker as a strong read sees it: it must be live and flushed, or the read cannot be strong. */
export interface FlushTarget {
  readonly spec: WorkerSpec;
  readonly live: boolean;
  readonly state: WorkerStateName;
}

/** Options of a Supervisor. */
export interface SupervisorOptions {
  /** Where the supervisor reports spawns, exits, respawns and stops. */
  readonly log: Logger;
  /** Absolute path of the built worker script (`dist/worker/main.js`). */
  readonly workerEntry: string;
  /** Node flags for the worker processes. @default COUNTAPP_WORKER_NODE_ARGS, split on spaces */
  readonly workerExecArgv?: readonly string[];
  /**
   * Called with what `liveWorkers()` now returns, whenever that changes. Optional; an
   * exception in it is logged, never breaks the supervisor.
   */
  readonly onLiveChange?: (live: readonly WorkerSpec[]) => void;
}

function sameSpec(a: WorkerSpec, b: WorkerSpec): boolean {
  return a.id === b.id && a.url === b.url && a.local === b.local && a.host === b.host && a.port === b.port;
}

function normalizeUrl(url: string): string {
  return url.replace(/\/+$/, '');
}

/**
 * Keeps the running workers equal to the desired ones (the config's): each desired worker
 * is a LocalWorker (spawned, respawned, health-checked, stopped gracefully) or a
 * RemoteWorker (health-checked only). The supervisor reconciles them with each new config,
 * keeps the live set for the forwarder (O(1) per request), and lists their state.
 */
export class Supervisor {
  readonly #log: Logger;
  readonly #workerEntry: string;
  readonly #workerExecArgv: readonly string[] | undefined;
  readonly #onLiveChange: ((live: readonly WorkerSpec[]) => void) | undefined;
  /**
   * Proves to a worker's control endpoints that a call comes from us: the config's
   * (`secret_file`, `secret_env`: workers run by hand read the same), or a random one that
   * never leaves this process except over IPC. Read at the first config; a restart changes it.
   */
  #secret: string | undefined;
  /** Whether the secret is the config's, so workers run by hand know it too. */
  #sharedSecret = false;
  #config: Config | undefined;
  /** Desired workers by id. */
  readonly #workers = new Map<string, ManagedWorker>();
  /** The same workers by URL, for markSuspect. */
  readonly #byUrl = new Map<string, ManagedWorker>();
  /** Workers removed from the config that are still stopping: listed, and waited for by a re-added namesake. */
  readonly #retiring = new Set<ManagedWorker>();
  #live: readonly WorkerSpec[] = Object.freeze([]);
  /** When the live set last changed (performance.now() ms); -Infinity before it ever did. */
  #liveChangedAt = Number.NEGATIVE_INFINITY;
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: SupervisorOptions) {
    this.#log = options.log;
    this.#workerEntry = options.workerEntry;
    this.#workerExecArgv = options.workerExecArgv;
    this.#onLiveChange = options.onLiveChange;
  }

  /**
   * Reconciles with `config` for the first time. Resolves once every local worker has
   * sent 'ready' or failed its first start, or after START_WAIT_MS (the slow ones keep starting).
   */
  async start(config: Config): Promise<void> {
    await this.apply(config);
  }

  /**
   * Reconciles after a config change: spawns added local workers, stops removed ones
   * gracefully, and sends the new config to every running worker so timings change at
   * once. Remote workers are only health-checked. Resolves when the added workers have
   * started (bounded by START_WAIT_MS) and the removed ones have exited.
   */
  async apply(config: Config): Promise<void> {
    if (this.#closing) return;
    if (this.#secret === undefined) {
      // A ConfigError here (an unreadable secret file) stops the start with its message.
      const configured = readClusterSecret(config);
      this.#sharedSecret = configured !== undefined;
      this.#secret = configured ?? randomBytes(32).toString('hex');
    }
    this.#config = config;
    const waits: Promise<unknown>[] = [];

    // Everything up to the first await is synchronous, so two overlapping apply() calls
    // cannot interleave their bookkeeping; only their waiting overlaps.
    const desired = new Map(config.workers.map((spec) => [spec.id, spec]));
    for (const [id, worker] of this.#workers) {
      const next = desired.get(id);
      if (next !== undefined && sameSpec(next, worker.spec)) {
        worker.spec = next;
        continue;
      }
      this.#workers.delete(id);
      if (this.#byUrl.get(worker.spec.url) === worker) this.#byUrl.delete(worker.spec.url);
      this.#log.info(`${id} was removed from the config`);
      waits.push(this.#retire(worker));
    }

    const added: ManagedWorker[] = [];
    for (const spec of config.workers) {
      if (this.#workers.has(spec.id)) continue;
      const worker = this.#create(spec);
      this.#workers.set(spec.id, worker);
      this.#byUrl.set(spec.url, worker);
      added.push(worker);
    }
    // New workers get the config in their init message; the others need it now.
    for (const worker of this.#workers.values()) {
      if (!added.includes(worker)) worker.sendConfig(config);
    }
    for (const worker of added) worker.start();
    this.#rebuildLive();

    const starting = added.filter((worker) => worker.spec.local);
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
    this.#byUrl.get(normalizeUrl(url))?.markSuspect();
  }

  /** When the live set last changed, in performance.now() ms (-Infinity: never). */
  get liveChangedAt(): number {
    return this.#liveChangedAt;
  }

  /** The cluster secret, for the coordinator's own control calls to its workers (a strong read's flushes); set once the first config is applied. */
  get controlSecret(): string {
    if (this.#secret === undefined) throw new Error('the supervisor has no secret before its first config');
    return this.#secret;
  }

  /**
   * What a strong read must flush: every configured worker (whether live, and its state),
   * and the ids of removed workers still stopping (their ids may not be persisted yet).
   */
  flushTargets(): { readonly configured: readonly FlushTarget[]; readonly retiring: readonly string[] } {
    const configured: FlushTarget[] = [];
    for (const spec of this.#config?.workers ?? []) {
      const worker = this.#workers.get(spec.id);
      if (worker !== undefined) configured.push({ spec: worker.spec, live: worker.live, state: worker.live ? 'up' : worker.status().state });
    }
    return { configured, retiring: [...this.#retiring].map((worker) => worker.spec.id) };
  }

  /** Every desired worker (in config order), then removed ones still stopping: for the status routes. */
  status(): WorkerStatus[] {
    const rows: WorkerStatus[] = [];
    for (const spec of this.#config?.workers ?? []) {
      const worker = this.#workers.get(spec.id);
      if (worker !== undefined) rows.push(worker.status());
    }
    for (const worker of this.#retiring) rows.push(worker.status());
    return rows;
  }

  /**
   * Empties the live set, then stops every worker gracefully in parallel and resolves once
   * every child process has exited. A second call returns the same promise.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#rebuildLive();
    // Each stop waits for its own process (and never rejects), so nothing is left behind.
    await Promise.all([...this.#workers.values(), ...this.#retiring].map((worker) => worker.stop()));
  }

  #create(spec: WorkerSpec): ManagedWorker {
    const config = (): Config => this.#config!;
    const onChange = (): void => this.#rebuildLive();
    if (!spec.local) {
      if (!this.#sharedSecret) this.#log.warn(`${spec.id} (${spec.url}) is not spawned here, and the config names no cluster secret (\`secret_file\` or \`secret_env\`): it cannot be sent the membership, nor take hand-overs`);
      return new RemoteWorker({ spec, log: this.#log, config, onChange, members: () => this.#members(), ...(this.#sharedSecret ? { secret: this.#secret! } : {}) });
    }
    // The same worker re-added while its previous self is still stopping: that one holds the port.
    const previous = [...this.#retiring].filter((worker) => worker.spec.id === spec.id).map((worker) => worker.stop());
    return new LocalWorker({
      spec,
      log: this.#log,
      config,
      entry: this.#workerEntry,
      ...(this.#workerExecArgv === undefined ? {} : { execArgv: this.#workerExecArgv }),
      secret: this.#secret!,
      after: Promise.all(previous),
      onChange,
      members: () => this.#members(),
    });
  }

  /** Stops a worker that left the config, keeping it listed while it does. */
  #retire(worker: ManagedWorker): Promise<void> {
    this.#retiring.add(worker);
    return worker.stop().finally(() => {
      this.#retiring.delete(worker);
    });
  }

  /** Waits for the first start of each worker, but not for longer than START_WAIT_MS. */
  async #waitForStarts(workers: readonly ManagedWorker[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), START_WAIT_MS);
      timer.unref();
    });
    try {
      const late = await Promise.race([Promise.all(workers.map((worker) => worker.firstStart)).then(() => false), timedOut]);
      if (late) {
        const waiting = workers.filter((worker) => worker.status().state === 'starting').map((worker) => worker.spec.id);
        if (waiting.length > 0) this.#log.warn(`still waiting for ${waiting.join(', ')} after ${START_WAIT_MS / 1000} s; going on without them`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #members(): MemberInfo[] {
    return this.#live.map((spec) => ({ id: spec.id, url: spec.url }));
  }

  #rebuildLive(): void {
    const live: WorkerSpec[] = [];
    if (!this.#closing) {
      for (const spec of this.#config?.workers ?? []) {
        const worker = this.#workers.get(spec.id);
        if (worker?.live === true) live.push(worker.spec);
      }
    }
    const before = this.#live;
    // A new config brings new spec objects for the same workers: that is no change.
    if (live.length === before.length && live.every((spec, i) => sameSpec(spec, before[i]!))) return;
    this.#live = Object.freeze(live);
    this.#liveChangedAt = performance.now();
    // Every worker learns the membership: the tenant files each one writes follow it. Not
    // while closing: stopping workers still hand ids to their owners until those exit.
    if (!this.#closing) {
      const members = this.#members();
      for (const worker of [...this.#workers.values(), ...this.#retiring]) worker.sendMembers(members);
    }
    if (this.#onLiveChange === undefined) return;
    try {
      this.#onLiveChange(this.#live);
    } catch (err) {
      this.#log.error('the onLiveChange callback of the supervisor threw', err);
    }
  }
}
