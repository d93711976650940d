import type { Config } from '../../shared/config.js';
import { VERSION } from '../../shared/version.js';
import { withoutPassword } from '../../shared/without-password.js';
import type { WorkerStatus } from '../managed-worker.js';
import type { ConfigProblem } from '../config-watcher.js';
import type { HistoryPoint } from './history.js';

/** What the status route reads, each when asked. */
export interface StatusSources {
  readonly configFile: string;
  readonly config: () => Config;
  readonly configError: () => ConfigProblem | undefined;
  readonly workers: () => readonly WorkerStatus[];
  /** Why the coordinator is not ready, or undefined when it is. */
  readonly notReady: () => string | undefined;
  /** The coordinator's answers so far: route → status → count. */
  readonly requests: () => Record<string, Record<string, number>>;
  readonly itemsAccepted: () => number;
  readonly history: () => { readonly intervalSeconds: number; readonly points: readonly HistoryPoint[] };
}

/** What a worker's `GET /` says (worker/main.ts); read defensively, a remote worker may run another version. */
interface WorkerAnswer {
  readonly durability?: unknown;
  readonly pending?: unknown;
  readonly pendingTenants?: unknown;
  readonly walBytes?: unknown;
  readonly wal?: { readonly bytes?: unknown; readonly lost?: unknown };
  readonly lastPersist?: { readonly at?: unknown; readonly ms?: unknown; readonly tenants?: unknown; readonly ids?: unknown; readonly failedTenants?: unknown; readonly ok?: unknown };
  readonly store?: { readonly heldTenants?: unknown };
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function lastPersistOf(round: WorkerAnswer['lastPersist']): Record<string, unknown> | null {
  const at = num(round?.at);
  if (round === undefined || at === null) return null;
  return { at: new Date(at).toISOString(), ms: Math.round((num(round.ms) ?? 0) * 10) / 10, tenants: num(round.tenants) ?? 0, ids: num(round.ids) ?? 0, failedTenants: num(round.failedTenants) ?? 0, ok: round.ok === true };
}

/** One worker's row: the supervisor's, and what its last passing health check answered. */
export function workerStatusRow(row: WorkerStatus): Record<string, unknown> {
  const answer = (row.health?.answer ?? undefined) as WorkerAnswer | undefined;
  const known = typeof answer === 'object' && answer !== null;
  return {
    id: row.id,
    url: row.url,
    local: row.local,
    state: row.state,
    pid: row.pid,
    uptime: row.uptime,
    restarts: row.restarts,
    lastExit: row.lastExit,
    nextRespawnAt: row.nextRespawnAt,
    checkedAt: row.health?.at ?? null,
    durability: known && typeof answer.durability === 'string' ? answer.durability : null,
    pendingIds: known ? num(answer.pending) : null,
    pendingTenants: known ? num(answer.pendingTenants) : null,
    tenants: known ? num(answer.store?.heldTenants) : null,
    walBytes: known ? num(answer.walBytes) ?? num(answer.wal?.bytes) : null,
    walLost: known && typeof answer.wal?.lost === 'boolean' ? answer.wal.lost : null,
    lastPersist: known ? lastPersistOf(answer.lastPersist) : null,
  };
}

/** The config as `GET /status` shows it: anyone who can reach the port reads it, so a Redis URL's password is masked (as in the logs). */
function shownConfig(config: Config): Config {
  if (config.store.kind !== 'redis') return config;
  return { ...config, store: { ...config.store, urls: config.store.urls.map(withoutPassword) } };
}

/** The coordinator's `GET /status` body (its schema: `Status` in the OpenAPI document). */
export function clusterStatus(sources: StatusSources): Record<string, unknown> {
  const notReady = sources.notReady();
  const problem = sources.configError();
  const history = sources.history();
  return {
    version: VERSION,
    pid: process.pid,
    uptime: Math.round(process.uptime() * 10) / 10,
    ready: notReady === undefined,
    notReadyReason: notReady ?? null,
    configFile: sources.configFile,
    config: shownConfig(sources.config()),
    configError: problem === undefined ? null : { at: new Date(problem.at).toISOString(), message: problem.message },
    workers: sources.workers().map(workerStatusRow),
    requests: sources.requests(),
    itemsAccepted: sources.itemsAccepted(),
    history: { intervalSeconds: history.intervalSeconds, points: history.points },
  };
}
