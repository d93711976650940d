import { publishesBetweenRounds } from '../../shared/config.js';
import { joinIdMaps, type IdMap } from './id-map.js';
import type { MergeBackend } from './merge-backend.js';
import { shareOutcome, type MergeOutcome, type MergePart } from './merger.js';

/** Most a merge waits for company, whatever the intervals (see gatherWindowMs). */
export const MAX_GATHER_MS = 250;

/**
 * How long a merge waits for others before it goes to the merge backend: a quarter of
 * the interval at which hand-overs come (`worker_publish` when a worker publishes
 * between rounds, else `worker_persist`), at most MAX_GATHER_MS. Every worker of a
 * cluster persists at the same moment of the interval, but on a busy machine their
 * hand-overs reach an owner spread over a few hundred ms; each merge appends once to
 * each of its tenant files (a shard lock, an open, a write, a stat), so merging them
 * together writes each file once per interval instead of once per arrival. Measured, 8
 * workers on 2 cores under full load (worker_persist 1 s): 3.7–4.0 appends per tenant
 * file per second with a 25 ms window, 1.9–2.0 with this one (one of the owner's own ids,
 * one of what was handed over), and the merge threads' CPU per item about halved.
 */
export function gatherWindowMs(persistSeconds: number, publishSeconds: number): number {
  const cadenceMs = (publishesBetweenRounds(persistSeconds, publishSeconds) ? publishSeconds : persistSeconds) * 1000;
  return Math.min(MAX_GATHER_MS, cadenceMs / 4);
}

/** How a merge is asked for. */
export interface GatherOptions {
  /** Epoch ms by which a stopping worker must let go (see MergeBackend.merge). */
  readonly stopBy?: number;
  /** Go at once, with whatever waits already (a worker's own ids; a strong read waiting for them). */
  readonly urgent?: boolean;
}

/**
 * Holds merges for a short window (see gatherWindowMs) and sends them to the backend as
 * one: the ids other workers hand over in one round become one append per tenant file.
 * A merge asked for urgently (the worker's own ids, a strong read), with a stop deadline,
 * or while the window is 0 goes at once and takes the waiting ones with it: a round's
 * own ids are written as soon as they were before, and a persist's time is its work.
 */
export class MergeGather {
  readonly #backend: Pick<MergeBackend, 'merge'>;
  readonly #windowMs: () => number;
  #jobs: MergePart[] = [];
  #stopBy: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#send();
  };

  constructor(backend: Pick<MergeBackend, 'merge'>, windowMs: () => number) {
    this.#backend = backend;
    this.#windowMs = windowMs;
  }

  /** Merges `map` with whatever else is asked for within the window; never rejects. */
  merge(map: IdMap, options: GatherOptions = {}): Promise<MergeOutcome> {
    return new Promise((resolve) => {
      this.#jobs.push({ map, resolve });
      if (options.stopBy !== undefined) this.#stopBy = Math.min(this.#stopBy ?? Infinity, options.stopBy);
      const windowMs = this.#windowMs();
      if (options.urgent === true || options.stopBy !== undefined || windowMs <= 0) this.flush();
      else this.#timer ??= setTimeout(this.#fire, windowMs);
    });
  }

  /** Sends what waits now (a stopping worker does not wait out the window). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#send();
  }

  #send(): void {
    const jobs = this.#jobs;
    const stopBy = this.#stopBy;
    this.#jobs = [];
    this.#stopBy = undefined;
    if (jobs.length === 0) return;
    this.#backend.merge(joinIdMaps(jobs.map((job) => job.map)), stopBy).then(
      (outcome) => shareOutcome(outcome, jobs),
      // Not expected (a backend never rejects); every tenant of every job then failed, so its ids stay pending.
      (error: unknown) => {
        for (const job of jobs) job.resolve({ written: 0, failed: new Map([...job.map].map(([tenant, ids]) => [tenant, { ids, error }])) });
      },
    );
  }
}
