import { Worker } from 'node:worker_threads';
import type { Logger } from '../../shared/log.js';
import { encodeIdMapCompact, type IdMap } from './id-map.js';
import type { MergeBackend } from './merge-backend.js';
import type { ThreadError, ThreadReply, ThreadRequest } from './merge-thread-messages.js';
import type { MergeOutcome } from './merger.js';

/** A hand-over of ids to the thread is cut into JSON objects of about this size. */
const CHUNK_BYTES = 4 * 1024 * 1024;

/** A request before it gets its id (Omit that keeps the union's members apart). */
type Unnumbered = ThreadRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

type Waiter = { resolve: (reply: Extract<ThreadReply, { type: 'done' }>) => void; reject: (err: Error) => void };

/** An error from the thread, as the main thread's code expects errors (message, code, file). */
function asError(error: ThreadError): Error {
  const err = new Error(error.message);
  err.name = error.name;
  return Object.assign(err, error.code === undefined ? {} : { code: error.code }, error.file === undefined ? {} : { file: error.file });
}

/**
 * Merges in a worker thread of the worker's own (merge-thread.ts). Appending to tenant
 * files means metadata updates that wait for the file system's journal while other
 * processes fsync; on the main thread every such wait would stall HTTP answers. A thread
 * that dies takes the worker down with it (the write-ahead log has everything).
 */
export class ThreadedMerges implements MergeBackend {
  readonly #thread: Worker;
  readonly #log: Logger;
  readonly #waiters = new Map<number, Waiter>();
  #next = 0;
  #held = { tenants: 0, ids: 0 };
  #closing = false;

  constructor(options: { database: string; log: Logger; staleMs: number }) {
    this.#log = options.log;
    this.#thread = new Worker(new URL('./merge-thread.js', import.meta.url), { workerData: { database: options.database, staleMs: options.staleMs } });
    this.#thread.on('message', (reply: ThreadReply) => this.#onReply(reply));
    this.#thread.on('error', (err) => {
      this.#log.error('the merge thread failed; stopping (the write-ahead log keeps every acknowledged id)', err);
      process.exit(70);
    });
    this.#thread.on('exit', (code) => {
      if (this.#closing) return;
      this.#log.error(`the merge thread exited (code ${code}); stopping (the write-ahead log keeps every acknowledged id)`);
      process.exit(70);
    });
  }

  #onReply(reply: ThreadReply): void {
    if (reply.type === 'log') {
      this.#log[reply.level](reply.message);
      return;
    }
    this.#held = reply.held;
    const waiter = this.#waiters.get(reply.id);
    this.#waiters.delete(reply.id);
    if (reply.error !== undefined) waiter?.reject(asError(reply.error));
    else waiter?.resolve(reply);
  }

  #ask(request: Unnumbered): Promise<Extract<ThreadReply, { type: 'done' }>> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiters.set(id, { resolve, reject });
      this.#thread.postMessage({ ...request, id });
    });
  }

  async merge(map: IdMap, stopBy?: number): Promise<MergeOutcome> {
    const failed = new Map<string, { ids: string[]; error: unknown }>();
    if (map.size === 0) return { written: 0, failed };
    let reply;
    try {
      reply = await this.#ask({ type: 'merge', chunks: encodeIdMapCompact(map, CHUNK_BYTES), ...(stopBy === undefined ? {} : { stopBy }) });
    } catch (err) {
      for (const [tenant, ids] of map) failed.set(tenant, { ids, error: err });
      return { written: 0, failed };
    }
    // A shared error arrives shared (structured cloning keeps identity): made into one Error, not one per tenant.
    const errors = new Map<ThreadError, Error>();
    for (const [tenant, error] of reply.failed ?? []) {
      let err = errors.get(error);
      if (err === undefined) errors.set(error, (err = asError(error)));
      failed.set(tenant, { ids: map.get(tenant) ?? [], error: err });
    }
    return { written: reply.written ?? 0, failed };
  }

  own(shards: readonly number[] | null): void {
    this.#ask({ type: 'own', shards }).catch((err: unknown) => this.#log.warn('the merge thread could not take the new shard ownership', err));
  }

  setDeadline(at: number): void {
    this.#ask({ type: 'deadline', at }).catch(() => {});
  }

  setStaleMs(ms: number): void {
    this.#ask({ type: 'stale', ms }).catch(() => {});
  }

  async repair(): Promise<number> {
    return (await this.#ask({ type: 'repair' })).written ?? 0;
  }

  async checkpoint(sync: boolean): Promise<void> {
    await this.#ask({ type: 'checkpoint', sync });
  }

  held(): { tenants: number; ids: number } {
    return this.#held;
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    try {
      await this.#ask({ type: 'close' });
    } finally {
      await this.#thread.terminate();
    }
  }
}
