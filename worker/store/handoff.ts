import http from 'node:http';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { COMPACT_ID_MAP_TYPE, encodeIdMapCompact, type IdMap } from './id-map.js';

/** The worker route that takes ids handed over by another worker (control route: needs the cluster secret). */
export const HANDOFF_PATH = '/internal/merge';
/** Largest hand-over request; a round's ids for one owner go in as many as needed. */
export const HANDOFF_CHUNK_BYTES = 1024 * 1024;
/** Hand-over requests in flight to one owner at once. */
const PARALLEL_CHUNKS = 2;
/** An owner's answer is `{"failed": [tenants]}`: more than this is not one of our workers. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** Idle keep-alive connections to an owner are closed after this long (see #post). */
const IDLE_CLOSE_MS = 30_000;

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
  /**
   * Keep-alive connections per owner. Node's own HTTP client, not undici: the worker
   * already has it loaded for its server, while loading undici at the first hand-over
   * held the event loop for 100-370 ms in the middle of a persist round (counts answered
   * meanwhile waited for it), and loading it at start slowed every worker's start-up.
   * A hand-over is a few large requests per round, where the client's speed is moot.
   */
  readonly #agents = new Map<string, http.Agent>();

  constructor(secret: () => string) {
    this.#secret = secret;
  }

  async send(url: string, map: IdMap, options: { visible: boolean; timeoutMs: number }): Promise<HandoffAnswer> {
    const chunks = encodeIdMapCompact(map, HANDOFF_CHUNK_BYTES);
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

  #post(url: string, body: string, options: { visible: boolean; timeoutMs: number }): Promise<HandoffAnswer> {
    let agent = this.#agents.get(url);
    if (agent === undefined) {
      // An idle connection is closed by us after IDLE_CLOSE_MS, well before the owner's
      // server would (65 s), so a hand-over never goes out on a connection it is closing.
      agent = new http.Agent({ keepAlive: true, maxSockets: PARALLEL_CHUNKS * 2, timeout: IDLE_CLOSE_MS });
      this.#agents.set(url, agent);
    }
    const target = new URL(options.visible ? `${HANDOFF_PATH}?wait=visible` : HANDOFF_PATH, url);
    const payload = Buffer.from(body, 'utf8');
    return new Promise<HandoffAnswer>((resolve, reject) => {
      const request = http.request(target, {
        method: 'POST',
        agent,
        headers: { 'content-type': COMPACT_ID_MAP_TYPE, 'content-length': payload.length, [SECRET_HEADER]: this.#secret() },
        signal: AbortSignal.timeout(options.timeoutMs),
      }, (response) => {
        const parts: Buffer[] = [];
        let bytes = 0;
        response.on('data', (part: Buffer) => {
          bytes += part.length;
          if (bytes > MAX_ANSWER_BYTES) {
            request.destroy(new Error(`${url} answered a hand-over with more than ${MAX_ANSWER_BYTES} bytes`));
            return;
          }
          parts.push(part);
        });
        response.on('error', reject);
        response.on('close', () => {
          if (!response.complete) {
            reject(new Error(`${url} closed the connection before its answer to a hand-over was complete`));
            return;
          }
          const text = Buffer.concat(parts).toString('utf8');
          if (response.statusCode !== 200) {
            reject(new Error(`${url} refused the hand-over: HTTP ${response.statusCode} ${text.slice(0, 200)}`));
            return;
          }
          try {
            const value = JSON.parse(text) as { failed?: unknown } | null;
            resolve({ failed: Array.isArray(value?.failed) ? value.failed.filter((t): t is string => typeof t === 'string') : [] });
          } catch {
            reject(new Error(`${url} answered a hand-over with ${JSON.stringify(text.slice(0, 200))}, not JSON`));
          }
        });
      });
      request.on('error', reject);
      request.end(payload);
    });
  }

  /** Closes the connections to workers that left the membership (or to all of them). */
  async close(keep: (url: string) => boolean = () => false): Promise<void> {
    for (const [url, agent] of this.#agents) {
      if (keep(url)) continue;
      this.#agents.delete(url);
      agent.destroy();
    }
  }
}
