import type { Config, WorkerSpec } from '../shared/config.js';
import type { MemberInfo } from '../shared/ipc.js';
import type { HealthRecord } from './health.js';

/**
 * Where a worker is in its life, as status rows show it:
 * - `starting`: spawned (or being spawned), not ready yet; a remote worker before its first check
 * - `up`: requests go to it
 * - `suspect`: ready, but the forwarder or a health check could not reach it: no requests until a check passes
 * - `down`: a remote worker that fails its checks
 * - `backing-off`: a local worker that died, waiting to be respawned
 * - `stopping`: asked to stop (removed from the config, or the cluster stops)
 * - `stopped`: gone for good
 */
export type WorkerStateName = 'starting' | 'up' | 'suspect' | 'down' | 'backing-off' | 'stopping' | 'stopped';

/** How the last process of a worker ended. */
export interface LastExit {
  /** ISO time of the exit. */
  readonly at: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** In words: the worker's own fatal message, "code 1", "signal SIGKILL", or why it could not be spawned. */
  readonly reason: string;
}

/** One row of `Supervisor.status()`: the state of one worker. */
export interface WorkerStatus {
  readonly id: string;
  readonly url: string;
  /** Spawned by this coordinator (a loopback URL), or only health-checked (another host). */
  readonly local: boolean;
  readonly state: WorkerStateName;
  /** The running process; null when there is none (or the worker is remote). */
  readonly pid: number | null;
  /** Seconds since the running process reported ready (a remote worker: since its checks pass); null when not up. */
  readonly uptime: number | null;
  /** How many times the worker was respawned after dying. */
  readonly restarts: number;
  /** How its last process ended; null when none has. */
  readonly lastExit: LastExit | null;
  /** When the next respawn is due (ISO time), while backing off. */
  readonly nextRespawnAt: string | null;
  /** The last health check that passed: its ISO time and the worker's answer (its JSON). */
  readonly health: { readonly at: string; readonly answer: unknown } | null;
}

/** One desired worker as the supervisor drives it, local (spawned) or remote (checked only). */
export interface ManagedWorker {
  /** The worker as the config names it; replaced by an equal spec when a new config keeps it. */
  spec: WorkerSpec;
  /** True when requests may go to it now. */
  readonly live: boolean;
  /** Settles when the first start succeeded or failed, or the worker was stopped; never rejects. */
  readonly firstStart: Promise<void>;
  /** Starts the worker's life (spawn, or health checks); called once. */
  start(): void;
  /** The forwarder could not reach it. */
  markSuspect(): void;
  /** A new config is in force: hand it to the running process. */
  sendConfig(config: Config): void;
  /** The live workers changed: each worker's share of the tenant files follows it. */
  sendMembers(members: readonly MemberInfo[]): void;
  status(): WorkerStatus;
  /** Stops it for good (gracefully) and resolves once its process has exited; the same promise on a second call. */
  stop(): Promise<void>;
}

/** The status row's `health` field from a monitor's last passing check. */
export function healthField(record: HealthRecord | undefined): WorkerStatus['health'] {
  return record === undefined ? null : { at: new Date(record.at).toISOString(), answer: record.answer };
}

/** Seconds since `since` (Date.now() ms), to a tenth; null when there is no `since`. */
export function uptimeSince(since: number | undefined): number | null {
  return since === undefined ? null : Math.round((Date.now() - since) / 100) / 10;
}
