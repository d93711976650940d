import type http from 'node:http';
import { AppError, endSentence, errorBody } from './errors.js';
import { newErrorId, type Logger } from './log.js';
import { sendJson } from './responses.js';

/**
 * `GET /readyz`: 200 `{"ready": true, ...}` when `check` finds nothing wrong, else 503
 * `not_ready` whose message is the reason. Probes ask every few seconds, so a reason is
 * logged once, when it appears (with the id every answer carries while it lasts), and the
 * return to ready once — not a line per probe.
 */
export class Readiness {
  readonly #log: Logger;
  readonly #check: () => string | undefined;
  readonly #details: () => Record<string, unknown>;
  /** The reason answered last, and its log line's id. */
  #last: { readonly reason: string; readonly id: string } | undefined;

  /**
   * @param check the reason the server cannot serve now, or undefined when it can
   * @param details what a 200 adds to `{"ready": true}`
   */
  constructor(log: Logger, check: () => string | undefined, details: () => Record<string, unknown> = () => ({})) {
    this.#log = log;
    this.#check = check;
    this.#details = details;
  }

  /** The reason the server is not ready, or undefined when it is (no log line). */
  reason(): string | undefined {
    return this.#check();
  }

  answer(res: http.ServerResponse): void {
    const reason = this.#check();
    if (reason === undefined) {
      if (this.#last !== undefined) this.#log.info(`ready again (was not: ${this.#last.reason})`);
      this.#last = undefined;
      sendJson(res, 200, { ready: true, ...this.#details() });
      return;
    }
    if (this.#last?.reason !== reason) {
      const id = newErrorId();
      this.#log.warn(`not ready: ${reason}`, undefined, id);
      this.#last = { reason, id };
    }
    sendJson(res, 503, errorBody(new AppError('not_ready', endSentence(`Not ready: ${reason}`)), this.#last!.id));
  }
}
