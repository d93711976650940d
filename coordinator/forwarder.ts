import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from 'undici';
import type { Config, WorkerSpec } from '../shared/config.js';
import { describeError } from '../shared/describe-error.js';
import { AppError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { FORWARDED_BY_HEADER, INSTANCE_ID } from './forwarded-by.js';
import { describeOwnResourceError, ownResourceErrorCode } from './resource-errors.js';
import { countAttempt, countFailure, countRetry } from './ops/metrics.js';
import { loadUndici } from './undici.js';
import { requestWorker } from './worker-request.js';

/** What the coordinator asks a worker. */
export interface ForwardRequest {
  readonly method: 'GET' | 'POST';
  /** Path and query, already encoded (`/items/count?tenant=a%2Fb`). */
  readonly path: string;
  /** Sent as `application/json`; only for POST. */
  readonly body?: Buffer | string;
  /**
   * When to give up (epoch ms), for a request that already waited before it was sent
   * (a queued batch). @default now + `forward_deadline` seconds
   */
  readonly deadline?: number;
  /** Headers besides the usual ones (content type, forwarded-by), which they may replace. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A worker's answer, body read in full: below 500, or a refusal passed on as it is (see forward()). */
export interface ForwardResponse {
  readonly status: number;
  readonly body: Buffer;
  /** The id of the worker that answered (`worker-5001`). */
  readonly worker: string;
}

export interface ForwarderOptions {
  readonly log: Logger;
  /** Timeouts and the worker list (pools of workers no longer listed are closed). */
  readonly config: Config;
  /** The workers that may take a request right now; called again for every round of attempts. */
  readonly liveWorkers: () => readonly WorkerSpec[];
  /** Told about a worker that failed at the connection level (refused, reset, timed out). */
  readonly markSuspect: (url: string) => void;
  /** This coordinator's id in the forwarded-by header (see forwarded-by.ts). @default INSTANCE_ID */
  readonly instanceId?: string;
}

/** Connections kept to each worker; matches the load generator's concurrency so no request queues behind another. */
const CONNECTIONS_PER_WORKER = 32;
/** The first wait once every live worker failed in a round; it doubles up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 25;
const MAX_BACKOFF_MS = 500;
/** How long a worker that just failed is passed over when another one is available. */
export const AVOID_AFTER_FAILURE_MS = 1000;
/** How long a URL that answered `forwarding_loop` is passed over (and its error not logged again). */
export const LOOP_AVOID_MS = 10_000;
/** An attempt cut shorter than forward_timeout by more than this gets its own timer (see forward()). */
const PRECISE_TIMER_MARGIN_MS = 50;
/**
 * No attempt starts with less than this left before the deadline: it could only time out,
 * turning what is known (nothing applied: 503) into `outcome_unknown`, and the batch it
 * carried might be stored after the client was told so. (The backoff's last sleep ends
 * at the deadline, so without this the last attempt often had a millisecond.)
 */
export const MIN_ATTEMPT_MS = 25;
/**
 * A worker's error answer (5xx) is read up to this size: whole, so a refusal passed on to
 * the client is complete JSON. A longer one is not ours; it is cut for the log only.
 */
export const ERROR_BODY_LIMIT = 16 * 1024;
/** How much of a failing worker's answer goes into the log line. */
const LOG_SNIPPET_CHARS = 300;
/** `no_worker_available` for a batch, and for a count. */
const NOTHING_STORED = 'No worker could take the request; nothing was stored. Try again shortly.';
const NO_COUNT = 'No worker could answer the count; try again shortly.';

/**
 * Errors raised before a request could reach the worker: the connection was never made
 * (or the pool was closed), so nothing was sent and nothing can have been applied. Any
 * other failure after the connection was made (timeout, reset, closed) may have left the
 * batch applied by a worker that did not get to answer.
 */
const NOT_SENT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED', 'UND_ERR_INVALID_ARG',
]);

/** Worker answers that settle a request without waiting out the deadline (nothing was applied). */
const DEFINITIVE_CODES: ReadonlySet<string> = new Set(['storage_unavailable', 'forwarding_loop']);

/** One failed attempt: a reason for the log line, and the error kept as the final cause. */
interface Failure {
  readonly reason: string;
  readonly error: unknown;
  /** The request was sent and may have been applied (it got no answer saying otherwise). */
  readonly maybeApplied: boolean;
  /**
   * A worker's own refusal that waiting would not change: 503 `storage_unavailable` (alive
   * but cannot write its log) or 508 `forwarding_loop` (the URL is a coordinator).
   */
  readonly definitive?: ForwardResponse;
}

/** The `error.code` of one of our JSON error bodies, or undefined. */
function errorCodeOf(bytes: Buffer): string | undefined {
  try {
    const code = (JSON.parse(bytes.toString('utf8')) as { error?: { code?: unknown } } | null)?.error?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof cause === 'string' ? cause : undefined;
}

/** What the forwarder knows of one worker URL. */
interface WorkerState {
  readonly pool: Pool;
  /** Attempts running on it now: of two random picks, the less busy one goes first. */
  inFlight: number;
  /** Epoch ms until which it is picked only when no other will do (it just failed); 0 when healthy. */
  avoidUntil: number;
  /** Epoch ms until which its forwarding loop is not logged again; 0 when it never looped. */
  loopLoggedUntil: number;
}

/**
 * Sends a request to a random live worker and, when that worker fails (refused, reset,
 * timed out, 5xx), to another one, until `forward_deadline` seconds have passed since
 * the call began. One undici Pool (keep-alive connections) per worker URL.
 *
 * The first pick is the less busy of two random live workers ("power of two choices"),
 * skipping one that failed within the last second when another is available: a hung
 * worker then holds back one request until its timeout, not half the traffic.
 *
 * When no worker answers by the deadline, the client learns what is known: 503
 * `no_worker_available` when no attempt can have been applied (refused connections, 503
 * answers), 504 `outcome_unknown` when a POST reached a worker that did not answer.
 */
export class Forwarder {
  readonly #log: Logger;
  readonly #liveWorkers: () => readonly WorkerSpec[];
  readonly #markSuspect: (url: string) => void;
  readonly #headers: { readonly get: Record<string, string>; readonly post: Record<string, string> };
  readonly #workers = new Map<string, WorkerState>();
  #config: Config;
  #closing: Promise<void> | undefined;

  constructor(options: ForwarderOptions) {
    this.#log = options.log;
    this.#config = options.config;
    this.#liveWorkers = options.liveWorkers;
    this.#markSuspect = options.markSuspect;
    const forwardedBy = options.instanceId ?? INSTANCE_ID;
    this.#headers = {
      get: { [FORWARDED_BY_HEADER]: forwardedBy },
      post: { 'content-type': 'application/json', [FORWARDED_BY_HEADER]: forwardedBy },
    };
  }

  /** New timeouts apply to the next attempt; pools of workers that left the config are closed. */
  setConfig(config: Config): void {
    this.#config = config;
    const wanted = new Set(config.workers.map((worker) => worker.url));
    for (const [url, state] of this.#workers) {
      if (wanted.has(url)) continue;
      this.#workers.delete(url);
      // close() lets requests already on the pool finish.
      state.pool.close().catch((err: unknown) => this.#log.warn(`closing the connections to ${url} failed`, err));
    }
  }

  /**
   * Resolves with the first answer below 500 from a worker, or at once with a worker's
   * definitive refusal when every live worker gave one (see Failure.definitive). Rejects
   * once the deadline has passed: `outcome_unknown` when a POST may have been applied,
   * else `no_worker_available` (cause: the last failure).
   */
  async forward(request: ForwardRequest): Promise<ForwardResponse> {
    let config = this.#config;
    const deadline = request.deadline ?? Date.now() + config.forward_deadline * 1000;
    let tried: string[] | undefined;
    let backoff = FIRST_BACKOFF_MS;
    let lastError: unknown;
    let maybeApplied = false;
    let definitive: ForwardResponse | undefined;
    let definitiveAnswers = 0;
    try {
      loadUndici();
    } catch (err) {
      // Nothing was sent (most likely the coordinator is out of file descriptors); the next request loads it again.
      throw this.#gaveUp(request, err, false, `The coordinator cannot load its HTTP client (${describeError(err)}).`);
    }
    for (;;) {
      if (this.#closing !== undefined) throw this.#gaveUp(request, lastError, maybeApplied, 'The coordinator is shutting down.');
      // No worker in the config at all: none will come back, so waiting would only delay the 503.
      if (this.#config.workers.length === 0) throw this.#gaveUp(request, lastError, maybeApplied, 'The config lists no workers.');
      const worker = tried === undefined ? this.#pickFirst() : this.#pickUntried(tried);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw this.#gaveUp(request, lastError, maybeApplied);
      // Every live worker is up but refused for a reason waiting would not change (its disk
      // refuses writes; it is a coordinator): the client learns it now (nothing was applied).
      if (worker === undefined && tried !== undefined && definitiveAnswers === tried.length) return definitive!;
      if (worker === undefined) {
        // Every live worker failed this round, or none is live (being respawned): wait, then try the current list.
        await sleep(Math.min(backoff, remaining));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        tried = undefined;
        definitiveAnswers = 0;
        continue;
      }
      if (remaining < MIN_ATTEMPT_MS) throw this.#gaveUp(request, lastError, maybeApplied);
      config = this.#config;
      // No attempt may run past the deadline the client was promised. undici's own timers
      // tick every ~0.5 s, so an attempt cut short by the deadline gets a precise timer too.
      const timeout = Math.min(config.forward_timeout * 1000, remaining);
      const precise = remaining < config.forward_timeout * 1000 - PRECISE_TIMER_MARGIN_MS;
      if (tried !== undefined || lastError !== undefined) countRetry();
      const outcome = await this.#attempt(worker, request, timeout, precise);
      if (!('reason' in outcome)) return outcome;
      lastError = outcome.error;
      if (outcome.maybeApplied && request.method === 'POST') maybeApplied = true;
      if (outcome.definitive !== undefined) {
        definitive = outcome.definitive;
        definitiveAnswers++;
      }
      this.#log.warn(`${request.method} ${request.path.length > 120 ? `${request.path.slice(0, 120)}...` : request.path} to ${worker.id} failed: ${outcome.reason}`);
      (tried ??= []).push(worker.url);
    }
  }

  /** The error for a request no worker answered: what the client may conclude depends on whether one may have applied it. */
  #gaveUp(request: ForwardRequest, lastError: unknown, maybeApplied: boolean, why?: string): AppError {
    countFailure(maybeApplied ? 'outcome_unknown' : 'no_worker_available');
    const prefix = why === undefined ? '' : `${why} `;
    if (maybeApplied) {
      return new AppError('outcome_unknown', `${prefix}A worker may have taken the batch but did not answer in time: it may or may not be stored. Retrying is safe (an item sent twice counts once).`, { cause: lastError });
    }
    // A GET is a count (GET /items/.../count, /counts, a strong read's): "nothing was stored" is a batch's news.
    if (request.method === 'GET') return new AppError('no_worker_available', `${prefix}${NO_COUNT}`, { cause: lastError });
    return new AppError('no_worker_available', why === undefined ? NOTHING_STORED : `${why} Nothing was stored.`, { cause: lastError });
  }

  /** Closes every pool (requests already sent finish first); a second call returns the same promise. */
  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    const workers = [...this.#workers];
    this.#workers.clear();
    await Promise.all(workers.map(async ([url, state]) => {
      try {
        await state.pool.close();
      } catch (err) {
        this.#log.warn(`closing the connections to ${url} failed`, err);
      }
    }));
  }

  /** The first attempt: the better of two random live workers, or undefined when none is live. */
  #pickFirst(): WorkerSpec | undefined {
    const live = this.#liveWorkers();
    const n = live.length;
    if (n <= 1) return live[0];
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = live[i]!;
    const b = live[j]!;
    const sa = this.#state(a.url);
    const sb = this.#state(b.url);
    if (sa.avoidUntil !== 0 || sb.avoidUntil !== 0) {
      const now = Date.now();
      const aAvoided = sa.avoidUntil > now;
      if (aAvoided !== sb.avoidUntil > now) return aAvoided ? b : a;
    }
    return sb.inFlight < sa.inFlight ? b : a;
  }

  /** A retry: a random live worker not yet tried this round, or undefined when there is none. */
  #pickUntried(tried: readonly string[]): WorkerSpec | undefined {
    const candidates = this.#liveWorkers().filter((worker) => !tried.includes(worker.url));
    return candidates.length === 0 ? undefined : candidates[Math.floor(Math.random() * candidates.length)];
  }

  #state(url: string): WorkerState {
    let state = this.#workers.get(url);
    if (state === undefined) {
      state = { pool: new (loadUndici().Pool)(url, { connections: CONNECTIONS_PER_WORKER, pipelining: 1 }), inFlight: 0, avoidUntil: 0, loopLoggedUntil: 0 };
      this.#workers.set(url, state);
    }
    return state;
  }

  #headersOf(request: ForwardRequest): Record<string, string> {
    const usual = request.method === 'POST' ? this.#headers.post : this.#headers.get;
    return request.headers === undefined ? usual : { ...usual, ...request.headers };
  }

  async #attempt(worker: WorkerSpec, request: ForwardRequest, timeout: number, precise: boolean): Promise<ForwardResponse | Failure> {
    const state = this.#state(worker.url);
    state.inFlight++;
    let failure: Failure;
    let avoidFor = AVOID_AFTER_FAILURE_MS;
    try {
      const { status, body, whole } = await requestWorker(state.pool, {
        method: request.method,
        path: request.path,
        headers: this.#headersOf(request),
        body: request.body,
        timeoutMs: timeout,
        precise,
        errorBodyLimit: ERROR_BODY_LIMIT,
      });
      if (status < 500) {
        countAttempt(worker.id, 'answered');
        state.inFlight--;
        state.avoidUntil = 0;
        return { status, body, worker: worker.id };
      }
      countAttempt(worker.id, 'error_status');
      const text = body.toString('utf8', 0, Math.min(body.length, LOG_SNIPPET_CHARS * 4)).replace(/\s+/g, ' ').trim().slice(0, LOG_SNIPPET_CHARS);
      const code = whole ? errorCodeOf(body) : undefined;
      // A 503 (storage_unavailable, shutting_down) is a refusal: the worker applied nothing.
      failure = { reason: `HTTP ${status}${text === '' ? '' : ` ${text}`}`, error: new Error(`${worker.id} answered HTTP ${status}: ${text}`), maybeApplied: status !== 503 && code !== 'forwarding_loop' };
      if (code !== undefined && DEFINITIVE_CODES.has(code)) failure = { ...failure, definitive: { status, body, worker: worker.id } };
      if (code === 'forwarding_loop') {
        avoidFor = LOOP_AVOID_MS;
        const now = Date.now();
        if (state.loopLoggedUntil <= now) {
          state.loopLoggedUntil = now + LOOP_AVOID_MS;
          this.#log.error(`forwarding loop: the workers entry ${worker.url} is a coordinator, not a worker (it answered 508 forwarding_loop); it gets no requests while another worker can take them. Fix \`workers\` in the config.`);
        }
      }
    } catch (err) {
      // A pool closed under us (worker removed from the config) says nothing about the worker,
      // nor does the coordinator's own lack of descriptors or memory (EMFILE on connect).
      const own = ownResourceErrorCode(err);
      const { ClientClosedError, ClientDestroyedError } = loadUndici().errors;
      if (own === undefined && !(err instanceof ClientClosedError || err instanceof ClientDestroyedError)) {
        this.#markSuspect(worker.url);
      }
      const code = errorCode(err);
      const reason = own === undefined ? describeError(err) : describeOwnResourceError(own);
      failure = { reason, error: err, maybeApplied: code === undefined || !NOT_SENT_CODES.has(code) };
      countAttempt(worker.id, failure.maybeApplied ? 'no_answer' : 'not_sent');
      if (own !== undefined) {
        state.inFlight--;
        return failure; // not the worker's fault: no avoidance either
      }
    }
    state.inFlight--;
    state.avoidUntil = Date.now() + avoidFor;
    return failure;
  }
}
