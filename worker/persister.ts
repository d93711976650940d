import { setTimeout as sleep } from 'node:timers/promises';
import { publishesBetweenRounds } from '../shared/config.js';
import type { Logger } from '../shared/log.js';
import { HANDOVER_MEMORY_MS } from '../shared/consistency.js';
import { describeError } from '../shared/describe-error.js';
import { endSentence } from '../shared/errors.js';
import { observePersistRound } from './metrics.js';
import type { Pending } from './pending.js';
import { addIdMap, encodeIdMap, idCount, type IdMap } from './store/id-map.js';
import type { Store } from './store/store.js';
import type { Wal } from './wal.js';
import type { Adoption, WalAdopter } from './wal-adopter.js';

/** What one persist round did. */
export interface RoundResult {
  /** Epoch ms when it ended. */
  readonly at: number;
  /** Tenants the round took ids of, the failed ones included. */
  readonly tenants: number;
  /** Ids persisted: not those of the failed tenants, which were only attempted and stay pending. */
  readonly ids: number;
  /** Tenants whose ids could not be persisted (they stay pending and logged). */
  readonly failedTenants: number;
  /**
   * Everything was persisted (no tenant failed) and checkpointed, and the sealed write-ahead
   * log segments were deleted. Failed tenants' ids are logged again, so their old segments
   * may go all the same: that alone does not make a round ok, as those ids are not persisted.
   */
  readonly ok: boolean;
  readonly adopted: number;
  /** The whole round, and of it the checkpoint (fsync) at its end. */
  readonly ms: number;
  readonly checkpointMs: number;
}

export interface PersisterOptions {
  readonly wal: Wal;
  readonly pending: Pending;
  readonly store: Store;
  readonly adopter: WalAdopter;
  readonly log: Logger;
  readonly intervalMs: number;
  /**
   * Between rounds, what is pending goes to the store this often (`worker_publish`; 0:
   * never), as a flush: handed to its tenants' owners and merged into the files, so every
   * worker counts it without waiting for the round, which then only makes the files
   * durable (checkpoint) and deletes the log segments. Under full load, every worker
   * handing over and merging a whole interval's ids at the same moment left every process
   * waiting for a core for 1-2 s of each round.
   */
  readonly publishMs: number;
  /**
   * Where in the interval (0..1) this worker persists. Every worker of a cluster uses the
   * same: each owner then receives the others' ids at once (see HANDOFF_GATHER_MS).
   */
  readonly phase: number;
}

/** Whether `map` has ids of any of `tenants` (walks the smaller of the two). */
function holdsAny(map: IdMap, tenants: ReadonlySet<string>): boolean {
  if (map.size <= tenants.size) {
    for (const tenant of map.keys()) if (tenants.has(tenant)) return true;
  } else {
    for (const tenant of tenants) if (map.has(tenant)) return true;
  }
  return false;
}

/** Waits for `work` until `stopBy` (epoch ms) at the latest; true when it settled in time. */
export async function settledBy(work: Promise<unknown>, stopBy: number | undefined): Promise<boolean> {
  if (stopBy === undefined) {
    await work.catch(() => {});
    return true;
  }
  const timer = new AbortController();
  const outcome = await Promise.race([
    work.then(() => true, () => true),
    sleep(Math.max(0, stopBy - Date.now()), false, { signal: timer.signal }).catch(() => false),
  ]);
  timer.abort();
  return outcome;
}

/** A re-logged write-ahead log record is kept below this size. */
const RECORD_BYTES = 1024 * 1024;
/** How often a lost write-ahead log is tried again. */
const RECOVER_RETRY_MS = 500;
/** A round that left tenants unpersisted (a lock held by a worker that just died, a full disk) is retried after this, doubling up to the interval. */
const FIRST_RETRY_MS = 1000;
/**
 * Hand-overs arriving this close together are flushed together (one persist of their
 * tenants); their merge then waits a little longer for the rest of the round's
 * hand-overs (see merge-gather.ts), so an owner writes each tenant file about once per
 * interval for all the others, however many workers there are.
 */
export const HANDOFF_GATHER_MS = 25;

/**
 * Moves acknowledged ids from the worker's memory and write-ahead log into the store.
 *
 * A round, every `intervalMs` at this worker's phase of the interval: seal the log
 * segment, take every pending id, add those of orphaned logs, persist them all, then —
 * only when every id of the sealed segments is persisted and checkpointed, or written
 * again into a newer segment — delete the sealed segments. A tenant that fails (its file
 * is a directory, the disk is full) is isolated: its ids are re-logged and stay pending,
 * and the others go through, so one bad tenant never makes the log grow without bound.
 *
 * A flush persists some tenants now, outside the rhythm: ids handed over by another
 * worker (so they are visible at once), strong reads, and every `publishMs` everything
 * pending (so counts need not wait for the round). Rounds and flushes may run at
 * the same time; a round waits for the flushes that began before it before it deletes.
 */
export class Persister {
  readonly #wal: Wal;
  readonly #pending: Pending;
  readonly #store: Store;
  readonly #adopter: WalAdopter;
  readonly #log: Logger;
  #intervalMs: number;
  #publishMs: number;
  readonly #phase: number;
  #timer: NodeJS.Timeout | undefined;
  #publishTimer: NodeJS.Timeout | undefined;
  /** The publish under way, if any: publishes never overlap. */
  #publishing: Promise<unknown> | undefined;
  /**
   * Tenants whose last persist failed (a file that is a directory, a full disk): left to
   * the rounds, which retry with a backoff, so a publish does not log them again every time.
   */
  #failing = new Set<string>();
  #running: Promise<RoundResult> | undefined;
  #queued: Promise<RoundResult> | undefined;
  #closing: Promise<RoundResult> | undefined;
  /** Ids taken from pending and not yet persisted: a lost log is rebuilt from these and pending. */
  readonly #inFlight = new Set<IdMap>();
  /** Flushes under way, with the ids each took from pending and whether it waits until they are visible. */
  readonly #flushes = new Map<Promise<Set<string>>, { readonly taken: IdMap; readonly visible: boolean }>();
  /** The persist step of the round under way, which may hold ids a flush is asked about. */
  #roundPersist: Promise<IdMap> | undefined;
  /** The ids that round persists (they may go to other workers without waiting to be visible there). */
  #roundTaken: IdMap | undefined;
  /**
   * When a persist that did not wait for visibility last ended, by tenant, oldest first
   * (each note moves its tenants to the end): see handedOverMsAgo.
   */
  readonly #handedOverAt = new Map<string, number>();
  /** Re-logs not finished yet, and how many ever failed: a round deletes nothing while one of its window failed. */
  readonly #relogs = new Set<Promise<void>>();
  #relogFailures = 0;
  #soon: { tenants: Set<string>; visible: boolean; done: Promise<Set<string>> } | undefined;
  #recovering: Promise<void> | undefined;
  #lastRound: RoundResult | undefined;
  /** After a round that left tenants unpersisted, the next comes this soon (doubling up to the interval). */
  #retryMs = FIRST_RETRY_MS;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Set once the worker is stopping: every persist from then on must be done by this time (epoch ms). */
  #stopBy: number | undefined;

  constructor(options: PersisterOptions) {
    this.#wal = options.wal;
    this.#pending = options.pending;
    this.#store = options.store;
    this.#adopter = options.adopter;
    this.#log = options.log;
    this.#intervalMs = options.intervalMs;
    this.#publishMs = options.publishMs;
    this.#phase = options.phase;
  }

  get lastRound(): RoundResult | undefined {
    return this.#lastRound;
  }

  /**
   * Ids taken from pending by a round or a flush and not through the store yet: once it is
   * zero along with pending, every worker counts everything this one acknowledged (what is
   * left of a round, its checkpoint, is about surviving a power cut, not about counts).
   */
  persistingIds(): number {
    let n = this.#roundTaken === undefined ? 0 : idCount(this.#roundTaken);
    for (const { taken } of this.#flushes.values()) n += idCount(taken);
    return n;
  }

  start(): void {
    this.#schedule();
    this.#schedulePublish();
  }

  /** A new `worker_publish`: the next publish is re-planned at once. */
  setPublishInterval(publishMs: number): void {
    if (publishMs === this.#publishMs) return;
    this.#publishMs = publishMs;
    if (this.#timer !== undefined && this.#closing === undefined) this.#schedulePublish();
  }

  #schedulePublish(): void {
    clearInterval(this.#publishTimer);
    this.#publishTimer = undefined;
    if (this.#publishMs <= 0) return;
    this.#publishTimer = setInterval(() => this.#publish(), this.#publishMs);
    this.#publishTimer.unref();
  }

  /**
   * Flushes everything pending (see PersisterOptions.publishMs), unless a publish or a
   * round's persist step is under way, or rounds come about as often anyway.
   */
  #publish(): void {
    if (this.#closing !== undefined || this.#publishing !== undefined || this.#roundPersist !== undefined) return;
    if (!publishesBetweenRounds(this.#intervalMs, this.#publishMs) || this.#pending.ids === 0) return;
    const tenants = this.#pending.tenantNames().filter((tenant) => !this.#failing.has(tenant));
    if (tenants.length === 0) return;
    this.#publishing = this.flush(tenants, { visible: false })
      .then((failed) => {
        for (const tenant of failed) this.#failing.add(tenant);
      })
      .catch((err: unknown) => this.#log.error('publishing pending ids to the store failed', err))
      .finally(() => {
        this.#publishing = undefined;
      });
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

  /** Write-ahead log records holding every id acknowledged and not yet persisted. */
  unpersistedRecords(): Buffer[] {
    const all: IdMap = new Map();
    for (const map of this.#inFlight) addIdMap(all, map);
    const records = encodeIdMap(all, RECORD_BYTES).map((text) => Buffer.from(text, 'utf8'));
    return [...this.#pending.toRecords(), ...records];
  }

  /**
   * The write-ahead log was found deleted or moved: make a new one holding everything not
   * yet persisted, then have the store write back what it lost. Calls while one attempt
   * runs share it; a failed attempt is retried shortly.
   */
  recoverSoon(): Promise<void> {
    this.#recovering ??= (async () => {
      try {
        await this.#wal.recover();
        this.#log.warn(`the write-ahead log was lost (deleted or moved); a new one in ${this.#wal.folder} holds the ${this.#pending.ids} id(s) not yet persisted`);
        const written = await this.#store.repair();
        this.#log.info(`the write-ahead log is recreated and ${written} tenant file(s) are written back from memory`);
      } catch (err) {
        this.#log.error(`cannot recreate the write-ahead log in ${this.#wal.folder}: ${describeError(err)}; batches are refused until it can`, err);
        setTimeout(() => { if (this.#closing === undefined) this.recoverSoon().catch(() => {}); }, RECOVER_RETRY_MS).unref();
      } finally {
        this.#recovering = undefined;
      }
    })();
    return this.#recovering;
  }

  /** Runs a round now (after the one under way, if any); calls while one waits share it. */
  persistNow(stopBy?: number): Promise<RoundResult> {
    if (this.#queued !== undefined) return this.#queued;
    const previous = this.#running ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => {
      this.#queued = undefined;
      this.#running = next;
      return this.#round(stopBy);
    }).finally(() => {
      if (this.#running === next) this.#running = undefined;
    });
    this.#queued = next;
    return next;
  }

  /**
   * Persists these tenants' pending ids now; with `visible`, resolves once every worker
   * counts them (including ids a round under way has taken). With `earlier` too, also
   * waits for the flushes under way that took ids of these tenants (a strong read: those
   * ids left pending before this call, so nothing else would make it wait for them). Only
   * the coordinator's flushes set it: a flush another worker asks for (a hand-over) never
   * waits for other flushes, so flushes on two workers can never wait for each other.
   * Resolves with the tenants that could not be persisted.
   */
  async flush(tenants: Iterable<string>, options: { visible: boolean; earlier?: boolean; handedOver?: boolean }): Promise<Set<string>> {
    const wanted = new Set(tenants);
    const earlier = options.earlier === true ? this.#flushesOf(wanted) : [];
    const taken = this.#pending.takeTenants(wanted);
    const round = this.#roundPersist;
    this.#inFlight.add(taken);
    const work = (async () => {
      const failed = await this.#store.persist(taken, { visible: options.visible, handedOver: options.handedOver === true, ...(this.#stopBy === undefined ? {} : { stopBy: this.#stopBy }) });
      if (!options.visible) this.#noteHandedOver(taken);
      this.#putBack(failed);
      const result = new Set(failed.keys());
      if (options.visible && round !== undefined) {
        const roundFailed = await round.catch(() => new Map<string, string[]>());
        for (const tenant of roundFailed.keys()) if (wanted.has(tenant)) result.add(tenant);
      }
      for (const flush of earlier) {
        for (const tenant of await flush) if (wanted.has(tenant)) result.add(tenant);
      }
      return result;
    })();
    this.#flushes.set(work, { taken, visible: options.visible });
    try {
      return await work;
    } finally {
      this.#flushes.delete(work);
      this.#inFlight.delete(taken);
    }
  }

  /** The flushes under way that took ids of any of `tenants`. */
  #flushesOf(tenants: ReadonlySet<string>): Promise<Set<string>>[] {
    const found: Promise<Set<string>>[] = [];
    for (const [flush, { taken }] of this.#flushes) {
      if (holdsAny(taken, tenants)) found.push(flush);
    }
    return found;
  }

  /**
   * Whether ids of these tenants are being persisted now without waiting until every
   * worker counts them (a round, or a flush of ids handed over): they may reach another
   * worker (their tenant's owner) only after a flush there, so a strong read that sees
   * this asks every worker once more. Call it just before `flush(..., { earlier: true })`,
   * which waits for exactly these.
   */
  handingOver(tenants: ReadonlySet<string>): boolean {
    if (this.#roundTaken !== undefined && holdsAny(this.#roundTaken, tenants)) return true;
    for (const { taken, visible } of this.#flushes.values()) {
      if (!visible && holdsAny(taken, tenants)) return true;
    }
    return false;
  }

  /**
   * How long ago (ms) the latest persist that handed ids of these tenants to their owners
   * without waiting until every worker counted them ended; undefined when none did lately.
   * Such ids may have reached their owner only after the owner's flush for a strong read
   * that began before this persist ended — and this worker's flush cannot wait for a
   * persist that is over. The coordinator compares this with when its read began and asks
   * every worker once more when it may have happened during the read.
   */
  handedOverMsAgo(tenants: ReadonlySet<string>): number | undefined {
    const now = performance.now();
    let latest = -Infinity;
    for (const tenant of tenants) latest = Math.max(latest, this.#handedOverAt.get(tenant) ?? -Infinity);
    return latest >= now - HANDOVER_MEMORY_MS ? now - latest : undefined;
  }

  /** A persist that did not wait for visibility ended: remember its tenants a while (see handedOverMsAgo). */
  #noteHandedOver(taken: IdMap): void {
    const now = performance.now();
    for (const tenant of taken.keys()) {
      this.#handedOverAt.delete(tenant);
      this.#handedOverAt.set(tenant, now);
    }
    // Oldest first: forget from the front what no strong read can still be waiting on.
    for (const [tenant, at] of this.#handedOverAt) {
      if (at >= now - HANDOVER_MEMORY_MS) break;
      this.#handedOverAt.delete(tenant);
    }
  }

  /** Like flush, but requests of one turn of the event loop go out together (ids handed over by several workers at once). */
  flushSoon(tenants: Iterable<string>, options: { visible: boolean }): Promise<Set<string>> {
    const wanted = [...tenants];
    if (this.#soon === undefined) {
      const soon = { tenants: new Set<string>(), visible: false, done: undefined as unknown as Promise<Set<string>> };
      soon.done = new Promise<void>((resolve) => setTimeout(resolve, options.visible ? 0 : HANDOFF_GATHER_MS)).then(() => {
        this.#soon = undefined;
        return this.flush(soon.tenants, { visible: soon.visible, handedOver: true });
      });
      this.#soon = soon;
    }
    const soon = this.#soon;
    for (const tenant of wanted) soon.tenants.add(tenant);
    soon.visible ||= options.visible;
    return soon.done.then((failed) => new Set(wanted.filter((tenant) => failed.has(tenant))));
  }

  /** A stopping worker's time to persist is up: from now on no round deletes a log segment (see #putBack). */
  #timeIsUp(): boolean {
    return this.#stopBy !== undefined && Date.now() >= this.#stopBy;
  }

  /**
   * Ids that could not be persisted go back into pending, and into the log again — except
   * once a stopping worker's time is up: the segments that hold them are then kept, as
   * no round deletes one from then on. Re-logging a backlog of tens of thousands of
   * tenants (encode, append, fsync) ran such a stop past its deadline, to the SIGKILL.
   */
  #putBack(failed: IdMap): void {
    if (this.#timeIsUp()) this.#pending.addMap(failed);
    else this.#relog(failed);
  }

  /** Puts ids that could not be persisted back into pending, and into the log again (their old segment is about to be deleted). */
  #relog(map: IdMap): void {
    if (map.size === 0) return;
    this.#pending.addMap(map);
    const work = (async () => {
      for (const text of encodeIdMap(map, RECORD_BYTES)) await this.#wal.append(Buffer.from(text, 'utf8'), () => {});
    })().catch((err: unknown) => {
      this.#relogFailures++;
      this.#log.error(`could not re-log ${idCount(map)} unpersisted id(s): ${describeError(err)}; the old log segments are kept`, err);
    });
    this.#relogs.add(work);
    void work.finally(() => this.#relogs.delete(work));
  }

  async #round(stopBy: number | undefined): Promise<RoundResult> {
    const started = performance.now();
    if (this.#wal.probeLost()) await this.recoverSoon();
    let sealed: number | undefined;
    try {
      sealed = await this.#wal.rotate();
    } catch (err) {
      this.#log.error(`cannot start a new write-ahead log segment: ${describeError(err)}; the log is kept until a round succeeds`, err);
    }
    const relogFailuresBefore = this.#relogFailures;
    const flushesBefore = [...this.#flushes.keys()];
    const snapshot = this.#pending.take();
    this.#inFlight.add(snapshot);
    try {
      // Known to flushes from the moment the ids leave pending (the adoption is awaited first).
      const work = (async () => {
        const adopted = await this.#adopter.adopt();
        for (const adoption of adopted) addIdMap(snapshot, adoption.ids);
        return { adopted, failed: await this.#store.persist(snapshot, { stopBy }) };
      })();
      const persisting = work.then((done) => done.failed);
      persisting.catch(() => {}); // the round itself reports a failure
      this.#roundPersist = persisting;
      this.#roundTaken = snapshot;
      let failed: IdMap;
      let adoptions: Adoption[];
      try {
        ({ adopted: adoptions, failed } = await work);
      } finally {
        if (this.#roundPersist === persisting) {
          this.#noteHandedOver(snapshot);
          this.#roundPersist = undefined;
          this.#roundTaken = undefined;
        }
      }
      this.#putBack(failed);
      this.#failing = new Set(failed.keys());
      await Promise.allSettled(flushesBefore);
      await Promise.allSettled([...this.#relogs]);
      const persistedAt = performance.now();
      let checkpointed = true;
      const checkpoint = this.#store.checkpoint();
      checkpoint.catch((err: unknown) => {
        checkpointed = false;
        this.#log.error(`${endSentence(`could not fsync what was persisted: ${describeError(err)}`)} The write-ahead log keeps it; retrying next round.`, err);
      });
      if (this.#timeIsUp() || !(await settledBy(checkpoint, stopBy))) {
        checkpointed = false;
        this.#log.warn('the worker is stopping before its files were fsynced: the write-ahead log keeps what they hold');
      }
      // Ids that failed once the stop's time was up were not logged again (see #putBack): their segments stay.
      const safe = checkpointed && !this.#timeIsUp() && this.#relogFailures === relogFailuresBefore;
      if (safe && sealed !== undefined) {
        try {
          await this.#wal.dropThrough(sealed);
        } catch (err) {
          this.#log.warn(`could not delete persisted write-ahead log segments (harmless: they are replayed idempotently): ${describeError(err)}`);
        }
      }
      for (const adoption of adoptions) {
        await adoption.finish(safe).catch((err: unknown) => this.#log.warn(`could not clean up the adopted log of ${adoption.workerId}: ${describeError(err)}`));
      }
      const taken = idCount(snapshot);
      // What reached the store: a failed tenant's ids were only attempted (an outside tester
      // saw hundreds of "persisted" ids, ok, with redis-server down and every tenant failed).
      const ids = taken - idCount(failed);
      const ms = performance.now() - started;
      const checkpointMs = performance.now() - persistedAt;
      const result: RoundResult = { at: Date.now(), tenants: snapshot.size, ids, failedTenants: failed.size, ok: safe && sealed !== undefined && failed.size === 0, adopted: adoptions.length, ms, checkpointMs };
      if (taken > 0 || adoptions.length > 0) {
        this.#log.info(`persisted ${ids} id(s) of ${snapshot.size - failed.size} tenant(s) in ${ms.toFixed(1)} ms (checkpoint ${checkpointMs.toFixed(1)} ms)${failed.size > 0 ? `; ${failed.size} tenant(s) failed and stay pending` : ''}`);
      }
      this.#lastRound = result;
      observePersistRound(result);
      this.#retrySoon(failed.size > 0);
      return result;
    } finally {
      this.#inFlight.delete(snapshot);
    }
  }

  /** Schedules an extra round when this one left tenants behind, sooner than the next interval. */
  #retrySoon(needed: boolean): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (!needed) {
      this.#retryMs = FIRST_RETRY_MS;
      return;
    }
    if (this.#closing !== undefined || this.#retryMs >= this.#intervalMs) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.persistNow().catch((err: unknown) => this.#log.error('persist round failed', err));
    }, this.#retryMs);
    this.#retryTimer.unref();
    this.#retryMs = Math.min(this.#retryMs * 2, this.#intervalMs);
  }

  /**
   * Stops the timer and runs a last round; `stopBy` (epoch ms) bounds it so a stopping
   * worker never overstays: what is not persisted by then stays in the write-ahead log,
   * and no lock is left held. A second call returns the same promise.
   */
  close(stopBy?: number): Promise<RoundResult> {
    this.#stopBy ??= stopBy;
    clearTimeout(this.#timer);
    clearTimeout(this.#retryTimer);
    clearInterval(this.#publishTimer);
    this.#timer = undefined;
    this.#closing ??= (async () => {
      await settledBy(Promise.allSettled([...this.#flushes.keys()]), stopBy);
      return this.persistNow(stopBy);
    })();
    return this.#closing;
  }
}
