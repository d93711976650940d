import type { Logger } from '../shared/log.js';
import { describeDiskError } from './disk-error.js';
import { mapSettledLimit } from '../shared/map-settled-limit.js';
import type { TenantStore } from './tenant-store.js';
import type { Wal } from './wal.js';
import type { WalAdopter } from './wal-owner.js';

/** What one persist round did. */
export interface RoundResult {
  readonly tenants: number;
  readonly ids: number;
  readonly failed: number;
  /** Every tenant appended and synced: the sealed write-ahead log segments were deleted. */
  readonly ok: boolean;
  readonly adopted: number;
  readonly ms: number;
}

/** Tenants written at once: enough to overlap lock waits and fsyncs, few enough not to flood the disk. */
const PARALLEL_TENANTS = 8;

/**
 * Runs persist rounds every `intervalMs`, at this worker's `phase` (0..1) of the
 * interval on the wall clock, so the workers of a cluster take turns instead of all
 * hitting the files at once. A round: seal the write-ahead log, adopt orphaned logs,
 * append every tenant's pending ids, and, only if all of that worked, delete the sealed
 * segments. A failed round loses nothing: ids stay pending and segments stay on disk.
 */
export class Persister {
  readonly #store: TenantStore;
  readonly #wal: Wal;
  readonly #adopter: WalAdopter;
  readonly #log: Logger;
  #intervalMs: number;
  readonly #phase: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<RoundResult> | undefined;
  #queued: Promise<RoundResult> | undefined;
  #closing: Promise<RoundResult> | undefined;

  constructor(options: { store: TenantStore; wal: Wal; adopter: WalAdopter; log: Logger; intervalMs: number; phase: number }) {
    this.#store = options.store;
    this.#wal = options.wal;
    this.#adopter = options.adopter;
    this.#log = options.log;
    this.#intervalMs = options.intervalMs;
    this.#phase = options.phase;
  }

  start(): void {
    this.#schedule();
  }

  /** A new `worker_persist`: the next round is re-planned at once. */
  setInterval(intervalMs: number): void {
    if (intervalMs === this.#intervalMs) return;
    this.#intervalMs = intervalMs;
    if (this.#timer !== undefined && this.#closing === undefined) this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    const interval = this.#intervalMs;
    const offset = this.#phase * interval;
    const delay = interval - ((((Date.now() - offset) % interval) + interval) % interval);
    this.#timer = setTimeout(() => {
      this.persistNow().catch((err: unknown) => this.#log.error('persist round failed', err));
      if (this.#closing === undefined) this.#schedule();
    }, Math.max(delay, 1));
  }

  /** Runs a round now (after the one under way, if any); calls while one waits share it. */
  persistNow(): Promise<RoundResult> {
    if (this.#queued !== undefined) return this.#queued;
    const previous = this.#running ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => {
      this.#queued = undefined;
      this.#running = next;
      return this.#round();
    }).finally(() => {
      if (this.#running === next) this.#running = undefined;
    });
    this.#queued = next;
    return next;
  }

  async #round(): Promise<RoundResult> {
    const started = performance.now();
    let sealed: number | undefined;
    try {
      sealed = await this.#wal.rotate();
    } catch (err) {
      this.#log.error(`cannot start a new write-ahead log segment: ${describeDiskError(err)}; the log is kept until a round succeeds`, err);
    }
    await this.#store.ensureFolder().catch(() => {}); // a failure shows in the persists below
    const adoptions = await this.#adopter.adopt(this.#store);
    const tenants = this.#store.dirtyTenants();
    const results = await mapSettledLimit(tenants, PARALLEL_TENANTS, (tenant) => this.#store.persist(tenant));
    let ids = 0;
    const failures: { tenant: string; reason: unknown }[] = [];
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') ids += result.value;
      else failures.push({ tenant: tenants[i]!, reason: result.reason });
    });
    let synced = true;
    try {
      await this.#store.syncWritten();
    } catch (err) {
      synced = false;
      this.#log.error(`could not fsync the tenant files: ${describeDiskError(err)}. The write-ahead log keeps their ids; retrying next round.`, err);
    }
    const ok = failures.length === 0 && synced;
    if (ok) {
      try {
        if (sealed !== undefined) await this.#wal.dropThrough(sealed);
      } catch (err) {
        this.#log.warn(`could not delete persisted write-ahead log segments (harmless: they are replayed idempotently): ${describeDiskError(err)}`);
      }
    } else if (failures.length > 0) {
      const first = failures[0]!;
      this.#log.error(
        `could not persist ${failures.length} of ${tenants.length} tenant(s) (first: ${JSON.stringify(first.tenant)}): ${describeDiskError(first.reason)}. ` +
          'Their ids stay pending and in the write-ahead log; retrying next round.',
        first.reason,
      );
    }
    for (const adoption of adoptions) {
      await adoption.finish(ok).catch((err: unknown) => this.#log.warn(`could not clean up the adopted log of ${adoption.workerId}: ${describeDiskError(err)}`));
    }
    const ms = performance.now() - started;
    if (ids > 0 || adoptions.length > 0) {
      this.#log.info(`persisted ${ids} id(s) of ${tenants.length - failures.length} tenant(s) in ${ms.toFixed(1)} ms`);
    }
    return { tenants: tenants.length, ids, failed: failures.length, ok, adopted: adoptions.length, ms };
  }

  /** Stops the timer and runs a last round; a second call returns the same promise. */
  close(): Promise<RoundResult> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#closing ??= this.persistNow();
    return this.#closing;
  }
}
