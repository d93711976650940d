import type { Logger } from '../shared/log.js';
import { describeOwnResourceError } from './resource-errors.js';
import { checkHealth, type HealthAnswer, type HealthCheck } from './worker-client.js';

/** How soon a worker the forwarder could not reach is checked again. */
export const SUSPECT_CHECK_MS = 100;
/** A worker failing this many checks in a row, over at least HUNG_MS, is killed as hung. */
export const HUNG_CHECKS = 5;
export const HUNG_MS = 5_000;
/** A health check waits at most this long for the answer (less with a short `health_check`). */
export const CHECK_TIMEOUT_MS = 2_000;

/** Options of a HealthMonitor. */
export interface HealthMonitorOptions {
  /** The worker's name, for the log. */
  readonly id: string;
  /** The worker's base URL; the check is `GET <url>/`. */
  readonly url: string;
  readonly log: Logger;
  /** The `health_check` interval now in force, in ms: read before every check. */
  readonly intervalMs: () => number;
  /** Whether the worker counts as serving before its first check: true for a local worker that reported 'ready'. */
  readonly trusted: boolean;
  /** Called when `serving` changes, so the owner can rebuild the live set. */
  readonly onChange: () => void;
  /** Called once when the worker has failed HUNG_CHECKS checks over HUNG_MS; absent for workers we cannot kill (remote). */
  readonly onHung?: (detail: string) => void;
  /** How a check is made. @default checkHealth (a real `GET /`) */
  readonly check?: HealthCheck;
}

/** The last check that passed: when, and what the worker answered (its JSON, parsed). */
export interface HealthRecord {
  readonly at: number;
  readonly answer: unknown;
}

/** A run of failed checks. */
interface FailingStreak {
  count: number;
  /** When the first failed check of the run started. */
  readonly since: number;
}

/**
 * Health-checks one worker every `health_check` seconds, one check at a time, and keeps
 * the verdict the live set needs: `serving` or not. A worker the forwarder could not reach
 * (markSuspect), or that refuses a check, stops serving until a check that started after
 * that passes; one slow answer is forgiven, two are not. A worker failing checks for the
 * hung window is reported once through `onHung`. A check the coordinator could not even
 * make (its own EMFILE and the like) is no verdict at all: it never counts against the
 * worker, and it breaks a failing run, so a kill needs HUNG_CHECKS real failures in a row.
 */
export class HealthMonitor {
  readonly #id: string;
  readonly #url: string;
  readonly #log: Logger;
  readonly #intervalMs: () => number;
  readonly #onChange: () => void;
  readonly #onHung: ((detail: string) => void) | undefined;
  readonly #check: HealthCheck;
  readonly #abort = new AbortController();
  /** Unknown (undefined) until the first verdict, for an untrusted worker. */
  #passing: boolean | undefined;
  /** When the worker became suspect; undefined while it is not. */
  #suspectSince: number | undefined;
  #failing: FailingStreak | undefined;
  #last: HealthRecord | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** A quick re-check was asked for (markSuspect) and has not started yet. */
  #soon = false;
  /** The resource error last reported, so a run of them is one log line. */
  #inconclusive: string | undefined;
  #hungReported = false;
  #started = false;
  #closed = false;

  constructor(options: HealthMonitorOptions) {
    this.#id = options.id;
    this.#url = options.url;
    this.#log = options.log;
    this.#intervalMs = options.intervalMs;
    this.#onChange = options.onChange;
    this.#onHung = options.onHung;
    this.#check = options.check ?? checkHealth;
    this.#passing = options.trusted ? true : undefined;
  }

  /** True when requests may go to the worker: its checks pass (or it is trusted and not yet failed) and it is not suspect. */
  get serving(): boolean {
    return this.#passing === true && this.#suspectSince === undefined;
  }

  /** False until the first verdict on a worker that is not trusted (a remote one before its first check). */
  get checked(): boolean {
    return this.#passing !== undefined || this.#suspectSince !== undefined;
  }

  /** The last check that passed, if any. */
  get last(): HealthRecord | undefined {
    return this.#last;
  }

  /** Starts the checks: the first after `firstDelayMs` (a full interval by default). */
  start(firstDelayMs = this.#intervalMs()): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#schedule(firstDelayMs);
  }

  /**
   * The forwarder could not reach the worker: it stops serving until a check that starts
   * from now on passes, and is checked again within SUSPECT_CHECK_MS.
   */
  markSuspect(): void {
    if (this.#closed) return;
    if (this.#suspectSince === undefined) {
      this.#suspectSince = Date.now();
      this.#log.warn(`${this.#id} is suspect: a forwarded request could not reach it; checking it again`);
      this.#changed();
    }
    // Only the first report before the re-check reschedules it, or a burst of failing
    // requests would keep pushing the check back.
    if (this.#soon) return;
    this.#soon = true;
    this.#schedule(SUSPECT_CHECK_MS);
  }

  /** Stops checking (a check in flight is aborted) and resolves when it has. A second call is harmless. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort.abort();
    await this.#running;
  }

  /** Checks of one worker never overlap: a check in flight schedules the next when it ends. */
  #schedule(delayMs: number): void {
    if (this.#closed || !this.#started || this.#running !== undefined) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#run().finally(() => {
        this.#running = undefined;
        this.#schedule(this.#soon ? SUSPECT_CHECK_MS : this.#intervalMs());
      });
    }, delayMs);
    // The HTTP server keeps the coordinator alive; health checks alone should not.
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    this.#soon = false;
    const startedAt = Date.now();
    let answer: HealthAnswer;
    try {
      answer = await this.#check(this.#url, { timeoutMs: Math.min(CHECK_TIMEOUT_MS, this.#intervalMs() * 2), signal: this.#abort.signal });
    } catch (err) {
      // A HealthCheck never rejects; a bug in one must not stop the checks.
      answer = { kind: 'failed', reason: err instanceof Error ? err.message : String(err), timedOut: false };
    }
    if (this.#closed) return;
    if (answer.kind === 'ok') this.#passed(startedAt, answer.body);
    else if (answer.kind === 'failed') this.#failed(startedAt, answer.reason, answer.timedOut);
    else this.#couldNotCheck(answer.code);
  }

  #passed(startedAt: number, body: unknown): void {
    this.#last = { at: Date.now(), answer: body };
    this.#failing = undefined;
    this.#inconclusive = undefined;
    this.#hungReported = false;
    const before = this.#passing;
    const wasServing = this.serving;
    this.#passing = true;
    // A check that began before the forwarder's report cannot clear it.
    if (this.#suspectSince !== undefined && startedAt >= this.#suspectSince) this.#suspectSince = undefined;
    if (!wasServing && this.serving) this.#log.info(before === undefined ? `${this.#id} is up` : `${this.#id} answers its health check again`);
    if (before !== true || wasServing !== this.serving) this.#changed();
  }

  #failed(startedAt: number, reason: string, timedOut: boolean): void {
    this.#inconclusive = undefined;
    const streak = (this.#failing ??= { count: 0, since: startedAt });
    streak.count += 1;
    const before = this.#passing;
    const wasServing = this.serving;
    // A refused or broken connection means it is not serving; one slow answer may be a busy moment.
    if (before === undefined || !timedOut || streak.count >= 2) this.#passing = false;
    if (wasServing && !this.serving) this.#log.warn(`${this.#id} failed its health check (${reason}): not forwarding to it until it answers`);
    else if (before === undefined) this.#log.warn(`${this.#id} failed its first health check (${reason}): not forwarding to it until it answers`);
    if (before !== this.#passing) this.#changed();

    if (this.#onHung === undefined || this.#hungReported) return;
    const failingFor = Date.now() - streak.since;
    const windowMs = Math.max(HUNG_CHECKS * this.#intervalMs(), HUNG_MS);
    if (streak.count >= HUNG_CHECKS && failingFor >= windowMs) {
      this.#hungReported = true;
      this.#onHung(`${this.#id} has failed its health checks for ${(failingFor / 1000).toFixed(1)} s (${streak.count} in a row, last: ${reason}): it looks hung`);
    }
  }

  #couldNotCheck(code: string): void {
    // Neither a pass nor a failure; a failing run needs its failures in a row.
    this.#failing = undefined;
    if (this.#inconclusive === code) return;
    this.#inconclusive = code;
    this.#log.error(`cannot health-check ${this.#id}: ${describeOwnResourceError(code)}; not counting it against the worker`);
  }

  #changed(): void {
    try {
      this.#onChange();
    } catch (err) {
      this.#log.error(`the health listener of ${this.#id} threw`, err);
    }
  }
}
