import type { Config, WorkerSpec } from '../shared/config.js';
import type { Logger } from '../shared/log.js';
import { HealthMonitor } from './health.js';
import { healthField, uptimeSince, type ManagedWorker, type WorkerStateName, type WorkerStatus } from './managed-worker.js';
import type { HealthCheck } from './worker-client.js';

/** Options of a RemoteWorker. */
export interface RemoteWorkerOptions {
  readonly spec: WorkerSpec;
  readonly log: Logger;
  /** The config in force. */
  readonly config: () => Config;
  /** Something `live` or the status depends on changed. */
  readonly onChange: () => void;
  /** How health checks are made. @default a real `GET /` */
  readonly check?: HealthCheck;
}

type RemoteState =
  | { readonly kind: 'idle' }
  | { readonly kind: 'checking'; readonly health: HealthMonitor }
  | { readonly kind: 'stopping' }
  | { readonly kind: 'stopped' };

/**
 * A worker on another host: never spawned or stopped by us, only health-checked. It is
 * live while its checks pass (and the forwarder has not found it unreachable since).
 */
export class RemoteWorker implements ManagedWorker {
  spec: WorkerSpec;
  readonly #log: Logger;
  readonly #config: () => Config;
  readonly #onChange: () => void;
  readonly #check: HealthCheck | undefined;
  #state: RemoteState = { kind: 'idle' };
  /** Since when its checks pass; undefined while they do not. */
  #upSince: number | undefined;
  #stopped: Promise<void> | undefined;
  /** Nobody waits for a remote worker's first check: apply() does not block on other hosts. */
  readonly firstStart: Promise<void> = Promise.resolve();

  constructor(options: RemoteWorkerOptions) {
    this.spec = options.spec;
    this.#log = options.log;
    this.#config = options.config;
    this.#onChange = options.onChange;
    this.#check = options.check;
  }

  get live(): boolean {
    return this.#state.kind === 'checking' && this.#state.health.serving;
  }

  start(): void {
    if (this.#state.kind !== 'idle') return;
    this.#log.info(`${this.spec.id} (${this.spec.url}) is remote: health-checking it, not spawning it`);
    const health = new HealthMonitor({
      id: this.spec.id,
      url: this.spec.url,
      log: this.#log,
      intervalMs: () => this.#config().health_check * 1000,
      trusted: false,
      onChange: () => this.#healthChanged(),
      ...(this.#check === undefined ? {} : { check: this.#check }),
    });
    this.#state = { kind: 'checking', health };
    health.start(0);
  }

  markSuspect(): void {
    if (this.#state.kind === 'checking') this.#state.health.markSuspect();
  }

  sendConfig(): void {
    // Nothing to send: a remote worker reads its own config.
  }

  sendMembers(): void {
    // A remote worker is not spawned here and has no IPC channel: it writes no tenant files of its own.
  }

  status(): WorkerStatus {
    const state = this.#state;
    const health = state.kind === 'checking' ? state.health : undefined;
    return {
      id: this.spec.id,
      url: this.spec.url,
      local: false,
      state: stateName(state),
      pid: null,
      uptime: uptimeSince(this.#upSince),
      restarts: 0,
      lastExit: null,
      nextRespawnAt: null,
      health: healthField(health?.last),
    };
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stopNow();
    return this.#stopped;
  }

  async #stopNow(): Promise<void> {
    const state = this.#state;
    this.#state = { kind: 'stopping' };
    this.#upSince = undefined;
    this.#onChange();
    if (state.kind === 'checking') await state.health.close();
    this.#state = { kind: 'stopped' };
    this.#onChange();
  }

  #healthChanged(): void {
    if (this.#state.kind !== 'checking') return;
    const serving = this.#state.health.serving;
    if (serving && this.#upSince === undefined) this.#upSince = Date.now();
    if (!serving) this.#upSince = undefined;
    this.#onChange();
  }
}

function stateName(state: RemoteState): WorkerStateName {
  switch (state.kind) {
    case 'idle':
      return 'starting';
    case 'checking':
      return !state.health.checked ? 'starting' : state.health.serving ? 'up' : 'down';
    default:
      return state.kind;
  }
}
