import type { Config, WorkerSpec } from '../shared/config.js';
import { membershipDigest, type MemberInfo } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { HealthMonitor } from './health.js';
import { healthField, uptimeSince, type ManagedWorker, type WorkerStateName, type WorkerStatus } from './managed-worker.js';
import { checkHealth, postMembers, type HealthCheck } from './worker-client.js';

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
  /**
   * The cluster secret, to send the worker the membership (it has no IPC channel); undefined
   * when the config names none (`secret_file`, `secret_env`): the worker then never learns it.
   */
  readonly secret?: string;
  /** The live membership now. @default none */
  readonly members?: () => readonly MemberInfo[];
}

/** A membership push waits this long for the worker's answer. */
const MEMBERS_TIMEOUT_MS = 2000;

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
  readonly #check: HealthCheck;
  readonly #secret: string | undefined;
  readonly #members: () => readonly MemberInfo[];
  readonly #abort = new AbortController();
  /** A membership push under way (one at a time), and the reason the last one failed. */
  #pushing: Promise<void> | undefined;
  #pushFailure: string | undefined;
  /** The membership changed while a push was under way: push again after it. */
  #pushAgain = false;
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
    this.#secret = options.secret;
    this.#members = options.members ?? (() => []);
    const check = options.check ?? checkHealth;
    // Every passing check shows the digest of the membership the worker holds: a worker that
    // restarted (or missed a push) gets the membership again, so it always comes round.
    this.#check = async (url, checkOptions) => {
      const answer = await check(url, checkOptions);
      if (answer.kind === 'ok') this.#compareMembership(answer.body);
      return answer;
    };
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
      check: this.#check,
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

  /** The worker has no IPC channel: the membership goes over HTTP, to a worker that answers its checks. */
  sendMembers(members: readonly MemberInfo[]): void {
    if (this.live) this.#push(members);
  }

  #compareMembership(body: unknown): void {
    const held = (body as { membership?: unknown } | null)?.membership;
    const members = this.#members();
    if (typeof held === 'string' && held !== membershipDigest(members)) this.#push(members);
  }

  #push(members: readonly MemberInfo[]): void {
    if (this.#secret === undefined || this.#state.kind !== 'checking') return;
    if (this.#pushing !== undefined) {
      this.#pushAgain = true;
      return;
    }
    const secret = this.#secret;
    this.#pushing = (async () => {
      const failure = await postMembers(this.spec.url, secret, members, { timeoutMs: MEMBERS_TIMEOUT_MS, signal: this.#abort.signal });
      if (failure !== undefined && failure !== this.#pushFailure && !this.#abort.signal.aborted) {
        this.#log.warn(`could not send ${this.spec.id} the membership (${failure}); retrying after its next health check`);
      }
      this.#pushFailure = failure;
    })().finally(() => {
      this.#pushing = undefined;
      if (!this.#pushAgain) return;
      this.#pushAgain = false;
      this.#push(this.#members());
    });
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
    this.#abort.abort();
    this.#onChange();
    if (state.kind === 'checking') await state.health.close();
    await this.#pushing;
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
