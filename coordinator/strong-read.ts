import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Pool } from 'undici';
import type { Config } from '../shared/config.js';
import { HANDOVER_MEMORY_MS } from '../shared/consistency.js';
import { SECRET_HEADER } from '../shared/control-secret.js';
import { AppError, endSentence } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { FlushTarget } from './supervisor.js';
import { loadUndici } from './undici.js';
import { requestWorker } from './worker-request.js';

/** The worker route a strong read calls on every worker (control route: needs the cluster secret). */
export const FLUSH_PATH = '/internal/flush';
/** Connections kept to each worker for flushes. */
const CONNECTIONS_PER_WORKER = 8;
/** A worker's refusal is read up to this size, for the message. */
const ERROR_BODY_LIMIT = 16 * 1024;
/**
 * Within this long after the live set changed, workers may still act on the membership
 * they knew before, and an id can travel one more hop (sent to a former owner, which
 * passes it on): one more round of flushes then (see prepare()).
 */
export const MEMBERSHIP_SETTLE_MS = 5000;

/** What a worker's flush said of its hand-overs, and when (performance.now()) its answer came. */
interface FlushAnswer {
  readonly handingOver: boolean;
  /** How long before its answer a persist that handed these tenants over ended; null: none in HANDOVER_MEMORY_MS. */
  readonly handedOverMsAgo: number | null;
  readonly answeredAt: number;
}

/** Clock steps (performance.now() is fine-grained; this only absorbs rounding). */
const CLOCK_SLACK_MS = 5;

/**
 * Whether a worker's hand-over of these tenants may have reached their owner after the
 * owner's flush of a read that began at `started`: under way, or ended at most
 * `handedOverMsAgo` before the answer came (so no earlier than answeredAt − ago, whatever
 * the network took), which is after the read began — or the read is older than what
 * workers remember.
 */
function handedOverDuring(answer: FlushAnswer, started: number): boolean {
  if (answer.handingOver) return true;
  if (answer.answeredAt - started > HANDOVER_MEMORY_MS) return true;
  return answer.handedOverMsAgo !== null && answer.answeredAt - answer.handedOverMsAgo >= started - CLOCK_SLACK_MS;
}

export interface StrongReadsOptions {
  readonly log: Logger;
  /** `forward_timeout` (each flush), `forward_deadline` (the whole read), `database` (orphaned logs). */
  readonly config: Config;
  /** The workers a strong read must flush (Supervisor.flushTargets). */
  readonly targets: () => { readonly configured: readonly FlushTarget[]; readonly retiring: readonly string[] };
  /** The cluster secret (Supervisor.controlSecret). */
  readonly secret: () => string;
  /** When the live set last changed, performance.now() ms (Supervisor.liveChangedAt). */
  readonly liveChangedAt: () => number;
}

/** Why a strong read cannot be answered now: the client gets 503 `strong_read_unavailable` with it. */
function unavailable(reason: string, cause?: unknown): AppError {
  // The reason may end with a worker's own message, and its period.
  return new AppError('strong_read_unavailable', `${endSentence(`A strong read has every worker persist the tenant first, and ${reason}`)} No count is answered rather than one that may miss acknowledged items: try again shortly, or read without consistency=strong.`, { cause });
}

/** The message of a worker's JSON error answer, or a snippet of what it said. */
function refusalOf(status: number, body: Buffer): string {
  const text = body.toString('utf8');
  try {
    const error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof error?.code === 'string') return `HTTP ${status} ${error.code}: ${String(error.message ?? '')}`;
  } catch {
    // not our JSON: the start of it says enough
  }
  return `HTTP ${status} ${text.replace(/\s+/g, ' ').slice(0, 200)}`;
}

/**
 * Prepares strong reads: before the count is read, every configured worker persists the
 * tenants' acknowledged ids and waits until every worker counts them (`POST
 * /internal/flush`, to all in parallel, with the cluster secret; one to three rounds). A worker that is not live, a
 * removed one still stopping, a log left by a worker that is gone, or a flush that fails
 * means some acknowledged ids may not be countable now: the read is refused (503
 * `strong_read_unavailable`), never answered stale.
 */
export class StrongReads {
  readonly #log: Logger;
  readonly #targets: StrongReadsOptions['targets'];
  readonly #secret: () => string;
  readonly #liveChangedAt: () => number;
  readonly #pools = new Map<string, Pool>();
  #config: Config;
  #closing: Promise<void> | undefined;

  constructor(options: StrongReadsOptions) {
    this.#log = options.log;
    this.#config = options.config;
    this.#targets = options.targets;
    this.#secret = options.secret;
    this.#liveChangedAt = options.liveChangedAt;
  }

  /** New timeouts for the next read; connections to workers no longer configured are closed. */
  setConfig(config: Config): void {
    this.#config = config;
    const wanted = new Set(config.workers.map((worker) => worker.url));
    for (const [url, pool] of this.#pools) {
      if (wanted.has(url)) continue;
      this.#pools.delete(url);
      pool.close().catch(() => {});
    }
  }

  /**
   * Resolves once every id of `tenants` acknowledged before this call is counted by every
   * worker; rejects with `strong_read_unavailable` (the reason in its message) when that
   * cannot be made sure of.
   */
  async prepare(tenants: readonly string[]): Promise<void> {
    const started = performance.now();
    const config = this.#config;
    const deadline = Date.now() + config.forward_deadline * 1000;
    const workers = this.#liveTargets();
    await this.#checkOrphanedLogs(config.database, workers);
    const body = JSON.stringify({ tenants });
    // Rounds of flushes. A worker's flush makes visible what it holds and waits for the
    // persists it had begun, but a persist round may hand ids to their tenant's owner just
    // after the owner's own flush. Under way, the worker says so (`handingOver`) and its
    // flush ends only once they have arrived; already over, it says how long ago
    // (`handedOverMsAgo`), and if that may have been after this read began the ids may
    // still be on their way into the owner's file. Either way a second round finds them.
    let handOverRound = false;
    let membershipRound = performance.now() - this.#liveChangedAt() < MEMBERSHIP_SETTLE_MS;
    for (let round = 1; ; round++) {
      const answers = await Promise.all(workers.map((spec) => this.#flush(spec.url, spec.id, body, deadline)));
      if (round === 1) handOverRound = answers.some((answer) => handedOverDuring(answer, started));
      if (this.#liveChangedAt() > started) membershipRound = true;
      if (round >= 1 + Number(handOverRound) + Number(membershipRound)) break;
    }
    // A worker that went down meanwhile may have taken hand-overs after its flush.
    this.#liveTargets();
  }

  /** The configured workers, all live; throws when one is not, or when a removed one is still stopping. */
  #liveTargets(): FlushTarget['spec'][] {
    const { configured, retiring } = this.#targets();
    const down = configured.filter((target) => !target.live);
    if (down.length > 0) {
      throw unavailable(`${down.map((target) => `${target.spec.id} is ${target.state}`).join(', ')}: ${down.length === 1 ? 'its' : 'their'} acknowledged items cannot be persisted until ${down.length === 1 ? 'it is' : 'they are'} up again`);
    }
    if (retiring.length > 0) {
      throw unavailable(`${retiring.join(', ')} ${retiring.length === 1 ? 'is' : 'are'} leaving the cluster (removed from the config) and may still hold items it has not persisted`);
    }
    return configured.map((target) => target.spec);
  }

  /**
   * A write-ahead log in the database whose worker is not configured: a worker removed (or
   * gone) before it could persist everything. A live worker adopts it at its next persist;
   * until then its items are in no count.
   */
  async #checkOrphanedLogs(database: string, workers: readonly FlushTarget['spec'][]): Promise<void> {
    let names: string[];
    try {
      names = await readdir(path.join(database, '.wal'));
    } catch {
      return; // no log folder: no log
    }
    const configured = new Set(workers.map((spec) => spec.id));
    const orphaned = names.filter((name) => !configured.has(name) && !name.endsWith('.lock'));
    if (orphaned.length > 0) {
      throw unavailable(`the write-ahead log of ${orphaned.slice(0, 3).join(', ')}${orphaned.length > 3 ? ` and ${orphaned.length - 3} more` : ''} (no longer in the cluster) still holds items not persisted: a live worker takes them over within \`worker_persist\` seconds`);
    }
  }

  /**
   * One worker's flush; resolves with what it said of its hand-overs of these tenants
   * (see handedOverDuring), throws `strong_read_unavailable` naming the worker when it fails.
   */
  async #flush(url: string, id: string, body: string, deadline: number): Promise<FlushAnswer> {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw unavailable(`the workers did not persist within \`forward_deadline\` (${this.#config.forward_deadline} s)`);
    let answer;
    try {
      answer = await requestWorker(this.#pool(url), {
        method: 'POST',
        path: FLUSH_PATH,
        headers: { 'content-type': 'application/json', [SECRET_HEADER]: this.#secret() },
        body,
        timeoutMs: Math.min(this.#config.forward_timeout * 1000, remaining),
        precise: true,
        errorBodyLimit: ERROR_BODY_LIMIT,
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw unavailable(`${id} could not be asked to (${typeof code === 'string' ? code : (err as Error).message})`, err);
    }
    if (answer.status !== 200) throw unavailable(`${id} could not: ${refusalOf(answer.status, answer.body)}`);
    const answeredAt = performance.now();
    try {
      const value = JSON.parse(answer.body.toString('utf8')) as { handingOver?: unknown; handedOverMsAgo?: unknown } | null;
      // Anything but a plain `false` and a number (or null: none lately) asks for another round: the safe side.
      const ago = value?.handedOverMsAgo;
      return { handingOver: value?.handingOver !== false, handedOverMsAgo: ago === null ? null : typeof ago === 'number' && ago >= 0 ? ago : 0, answeredAt };
    } catch {
      return { handingOver: true, handedOverMsAgo: 0, answeredAt };
    }
  }

  #pool(url: string): Pool {
    let pool = this.#pools.get(url);
    if (pool === undefined) {
      pool = new (loadUndici().Pool)(url, { connections: CONNECTIONS_PER_WORKER, pipelining: 1 });
      this.#pools.set(url, pool);
    }
    return pool;
  }

  /** Closes every connection (flushes under way finish first); the same promise on a second call. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const pools = [...this.#pools.values()];
      this.#pools.clear();
      await Promise.all(pools.map((pool) => pool.close().catch((err: unknown) => this.#log.warn('closing the connections for strong reads failed', err))));
    })();
    return this.#closing;
  }
}
