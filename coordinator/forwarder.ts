import { Pool, errors as undiciErrors } from 'undici';
import type { Config, WorkerSpec } from '../shared/config.js';
import { AppError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';

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
}

/** A worker's answer below 500, body read in full. */
export interface ForwardResponse {
  readonly status: number;
  readonly body: Buffer;
}

export interface ForwarderOptions {
  readonly log: Logger;
  /** Timeouts and the worker list (pools of workers no longer listed are closed). */
  readonly config: Config;
  /** The workers that may take a request right now; called again for every round of attempts. */
  readonly liveWorkers: () => readonly WorkerSpec[];
  /** Told about a worker that failed at the connection level (refused, reset, timed out). */
  readonly markSuspect: (url: string) => void;
}

/** Connections kept to each worker; matches the load generator's concurrency so no request queues behind another. */
const CONNECTIONS_PER_WORKER = 32;
const FIRST_BACKOFF_MS = 25;
const MAX_BACKOFF_MS = 500;
/** How long a worker that just failed is passed over when another one is available. */
const AVOID_AFTER_FAILURE_MS = 1000;
/** An attempt cut shorter than forward_timeout by more than this gets its own timer (see forward()). */
const PRECISE_TIMER_MARGIN_MS = 50;
const POST_HEADERS = { 'content-type': 'application/json' } as const;
/** How much of a failing worker's answer goes into the log line. */
const ERROR_SNIPPET_BYTES = 300;

/** One failed attempt: a reason for the log line, and the error kept as the final cause. */
interface Failure {
  readonly reason: string;
  readonly error: unknown;
  /** A worker's own 503 `storage_unavailable` answer: it is alive but cannot write its log. */
  readonly storageAnswer?: ForwardResponse;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const cause = err.cause instanceof Error ? ` (${(err.cause as { code?: string }).code ?? err.cause.message})` : '';
    return `${typeof code === 'string' ? `${code}: ` : ''}${err.message}${cause}`;
  }
  return String(err);
}

/** Reads the start of an error answer for the log, then drops the rest so the socket is freed. */
async function snippet(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= ERROR_SNIPPET_BYTES) break; // leaving the loop destroys the stream
    }
  } catch {
    body.destroy();
  }
  const text = Buffer.concat(chunks).subarray(0, ERROR_SNIPPET_BYTES).toString('utf8');
  return text.replace(/\s+/g, ' ').trim();
}

/** What the forwarder knows of one worker URL. */
interface WorkerState {
  readonly pool: Pool;
  /** Attempts running on it now: of two random picks, the less busy one goes first. */
  inFlight: number;
  /** Epoch ms until which it is picked only when no other will do (it just failed); 0 when healthy. */
  avoidUntil: number;
}

/**
 * Sends a request to a random live worker and, when that worker fails (refused, reset,
 * timed out, 5xx), to another one, until `forward_deadline` seconds have passed since
 * the call began. One undici Pool (keep-alive connections) per worker URL.
 *
 * The first pick is the less busy of two random live workers ("power of two choices"),
 * skipping one that failed within the last second when another is available: a hung
 * worker then holds back one request until its timeout, not half the traffic.
 */
export class Forwarder {
  readonly #log: Logger;
  readonly #liveWorkers: () => readonly WorkerSpec[];
  readonly #markSuspect: (url: string) => void;
  readonly #workers = new Map<string, WorkerState>();
  #config: Config;
  #closing: Promise<void> | undefined;

  constructor(options: ForwarderOptions) {
    this.#log = options.log;
    this.#config = options.config;
    this.#liveWorkers = options.liveWorkers;
    this.#markSuspect = options.markSuspect;
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
   * Resolves with the first answer below 500 from a worker; rejects with
   * `no_worker_available` (cause: the last failure) once the deadline has passed.
   */
  async forward(request: ForwardRequest): Promise<ForwardResponse> {
    let config = this.#config;
    const deadline = request.deadline ?? Date.now() + config.forward_deadline * 1000;
    let tried: string[] | undefined;
    let backoff = FIRST_BACKOFF_MS;
    let lastError: unknown;
    let storageAnswer: ForwardResponse | undefined;
    let storageAnswers = 0;
    for (;;) {
      if (this.#closing !== undefined) {
        throw new AppError('no_worker_available', 'The coordinator is shutting down.', { cause: lastError });
      }
      // No worker in the config at all: none will come back, so waiting would only delay the 503.
      if (this.#config.workers.length === 0) throw new AppError('no_worker_available', 'The config lists no workers; nothing was stored.');
      const worker = tried === undefined ? this.#pickFirst() : this.#pickUntried(tried);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new AppError('no_worker_available', undefined, { cause: lastError });
      // Every live worker is up but said its disk refuses writes: waiting out the deadline
      // would not help, so the client learns it now (nothing was acknowledged).
      if (worker === undefined && tried !== undefined && storageAnswers === tried.length) return storageAnswer!;
      if (worker === undefined) {
        // Every live worker failed this round, or none is live (being respawned): wait, then try the current list.
        await sleep(Math.min(backoff, remaining));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        tried = undefined;
        storageAnswers = 0;
        continue;
      }
      config = this.#config;
      // No attempt may run past the deadline the client was promised. undici's own timers
      // tick every ~0.5 s, so an attempt cut short by the deadline gets a precise timer too.
      const timeout = Math.min(config.forward_timeout * 1000, remaining);
      const precise = remaining < config.forward_timeout * 1000 - PRECISE_TIMER_MARGIN_MS;
      const outcome = await this.#attempt(worker, request, timeout, precise);
      if (!('reason' in outcome)) return outcome;
      lastError = outcome.error;
      if (outcome.storageAnswer !== undefined) {
        storageAnswer = outcome.storageAnswer;
        storageAnswers++;
      }
      this.#log.warn(`${request.method} ${request.path.length > 120 ? `${request.path.slice(0, 120)}...` : request.path} to ${worker.id} failed: ${outcome.reason}`);
      (tried ??= []).push(worker.url);
    }
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
      state = { pool: new Pool(url, { connections: CONNECTIONS_PER_WORKER, pipelining: 1 }), inFlight: 0, avoidUntil: 0 };
      this.#workers.set(url, state);
    }
    return state;
  }

  async #attempt(worker: WorkerSpec, request: ForwardRequest, timeout: number, precise: boolean): Promise<ForwardResponse | Failure> {
    const state = this.#state(worker.url);
    state.inFlight++;
    let failure: Failure;
    try {
      const response = await state.pool.request({
        method: request.method,
        path: request.path,
        headers: request.method === 'POST' ? POST_HEADERS : undefined,
        body: request.body,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal: precise ? AbortSignal.timeout(timeout) : undefined,
      });
      const status = response.statusCode;
      if (status < 500) {
        // A failed read destroys the stream (and its socket) itself.
        const bytes = await response.body.bytes();
        state.inFlight--;
        state.avoidUntil = 0;
        return { status, body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
      }
      const text = await snippet(response.body);
      failure = { reason: `HTTP ${status}${text === '' ? '' : ` ${text}`}`, error: new Error(`${worker.id} answered HTTP ${status}: ${text}`) };
      if (status === 503 && text.includes('"storage_unavailable"')) {
        failure = { ...failure, storageAnswer: { status, body: Buffer.from(text) } };
      }
    } catch (err) {
      // A pool closed under us (worker removed from the config) says nothing about the worker.
      if (!(err instanceof undiciErrors.ClientClosedError || err instanceof undiciErrors.ClientDestroyedError)) {
        this.#markSuspect(worker.url);
      }
      failure = { reason: describeError(err), error: err };
    }
    state.inFlight--;
    state.avoidUntil = Date.now() + AVOID_AFTER_FAILURE_MS;
    return failure;
  }
}
