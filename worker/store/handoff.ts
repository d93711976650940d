import { createRequire } from 'node:module';
import type { Pool } from 'undici';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { encodeIdMap, type IdMap } from './id-map.js';

const requireModule = createRequire(import.meta.url);

/** The worker route that takes ids handed over by another worker (control route: needs the cluster secret). */
export const HANDOFF_PATH = '/internal/merge';
/** Largest hand-over request; a round's ids for one owner go in as many as needed. */
export const HANDOFF_CHUNK_BYTES = 1024 * 1024;
/** Hand-over requests in flight to one owner at once. */
const PARALLEL_CHUNKS = 2;

/** What an owner answers to a hand-over. */
export interface HandoffAnswer {
  /** Tenants it could not make visible (only when asked to wait for that). */
  readonly failed: readonly string[];
}

/**
 * Sends ids to the worker that writes their tenants' files. The owner answers once the
 * ids are in its write-ahead log (durable: the sender may forget them), or, with
 * `visible`, once they are in the tenant files too (what a strong read waits for).
 */
export class HandoffClient {
  readonly #secret: () => string;
  readonly #pools = new Map<string, Pool>();

  constructor(secret: () => string) {
    this.#secret = secret;
  }

  async send(url: string, map: IdMap, options: { visible: boolean; timeoutMs: number }): Promise<HandoffAnswer> {
    const chunks = encodeIdMap(map, HANDOFF_CHUNK_BYTES);
    const failed: string[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < chunks.length) {
        const answer = await this.#post(url, chunks[next++]!, options);
        failed.push(...answer.failed);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_CHUNKS, chunks.length) }, lane));
    return { failed };
  }

  async #post(url: string, body: string, options: { visible: boolean; timeoutMs: number }): Promise<HandoffAnswer> {
    let pool = this.#pools.get(url);
    if (pool === undefined) {
      // undici is loaded at the first hand-over, not at start (~100 ms of a worker's
      // start-up), with require: a failed import() would be remembered by Node for good,
      // a failed require is tried again (out of file descriptors, this hand-over fails,
      // its ids are merged here instead, and the next one loads it).
      const { Pool: UndiciPool } = requireModule('undici') as typeof import('undici');
      pool = new UndiciPool(url, { connections: PARALLEL_CHUNKS * 2 });
      this.#pools.set(url, pool);
    }
    const response = await pool.request({
      method: 'POST',
      path: options.visible ? `${HANDOFF_PATH}?wait=visible` : HANDOFF_PATH,
      headers: { 'content-type': 'application/json', [SECRET_HEADER]: this.#secret() },
      body,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) throw new Error(`${url} refused the hand-over: HTTP ${response.statusCode} ${text.slice(0, 200)}`);
    const value = JSON.parse(text) as { failed?: unknown };
    return { failed: Array.isArray(value.failed) ? value.failed.filter((t): t is string => typeof t === 'string') : [] };
  }

  /** Closes the pools of workers that left the membership (or all of them). */
  async close(keep: (url: string) => boolean = () => false): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [url, pool] of this.#pools) {
      if (keep(url)) continue;
      this.#pools.delete(url);
      closing.push(pool.close().catch(() => {}));
    }
    await Promise.all(closing);
  }
}
