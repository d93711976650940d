/** The first respawn of a worker that died comes this soon. */
export const FIRST_BACKOFF_MS = 250;
/** Each failure in a row doubles the wait, up to this. */
export const MAX_BACKOFF_MS = 30_000;
/** A worker that stayed ready this long has recovered: its next failure starts the backoff afresh. */
export const STABLE_MS = 10_000;

/** The wait before the next start after `failures` failed runs in a row (1 for the first). */
export function backoffDelay(failures: number): number {
  if (!Number.isInteger(failures) || failures < 1) throw new RangeError(`Expected \`failures\` to be an integer >= 1, got ${failures}`);
  // Capped before the power, so a worker that fails for days cannot overflow the exponent.
  return Math.min(FIRST_BACKOFF_MS * 2 ** Math.min(failures - 1, 30), MAX_BACKOFF_MS);
}

/**
 * The respawn policy of one worker: exponential backoff over its failures in a row, where a
 * run that stayed ready for STABLE_MS breaks the streak. Pure bookkeeping, no timers: the
 * caller waits the delay it is given.
 */
export class RespawnBackoff {
  #failures = 0;

  /** Failed runs in a row so far. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Records a run that ended without being asked to (or a start that failed) and returns
   * how long to wait before the next start. `readyForMs` is how long the run had been
   * ready, undefined when it never was.
   */
  failed(readyForMs: number | undefined): number {
    this.#failures = readyForMs !== undefined && readyForMs >= STABLE_MS ? 1 : this.#failures + 1;
    return backoffDelay(this.#failures);
  }
}
