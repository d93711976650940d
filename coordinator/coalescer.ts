import { decodePartAnswers, MAX_PARTS, PARTS_HEADER, partsHeader } from '../shared/batch-parts.js';
import type { Config } from '../shared/config.js';
import { SECRET_HEADER } from '../shared/control-secret.js';
import { AppError } from '../shared/errors.js';
import { ROUTES } from '../shared/routes.js';
import type { Forwarder, ForwardResponse } from './forwarder.js';
import { mergedBatches } from './ops/metrics.js';

export interface CoalescerOptions {
  /** Where batches go (the Forwarder; a test passes a fake). */
  readonly forwarder: Pick<Forwarder, 'forward'>;
  /** `coalesce`, `max_batch_items`, `max_body_bytes` and `forward_deadline` are read from it. */
  readonly config: Config;
  /**
   * The cluster secret, for `POST /internal/batches` (batches only a worker validates, sent
   * together). Without it such batches always go alone.
   */
  readonly secret?: () => string;
}

/**
 * Upstream requests of batches running at once. While they run, new batches queue and
 * leave together in one request when one finishes: fewer, larger upstream requests.
 * Against real workers (4, durability fsync, 1-item batches, 32 clients, alternating
 * runs): 2 → 5,800–7,000 req/s, 4 → 4,900–5,600, 8 → 2,500–3,100; 1 did 6,600–7,500
 * against 6,500–6,600 for 2. Every upstream request costs the workers a durable write
 * and an HTTP exchange on cores the coordinator shares with them, so fewer and larger
 * ones win; 2 rather than 1, so one slow fdatasync does not hold every small batch.
 * (Against a fake worker with 1 ms of latency and no disk, more was better: 4 → ~13,000,
 * 1 → ~8,600.)
 */
export const MAX_IN_FLIGHT = 2;
/**
 * When no upstream request has finished for this long while batches wait (every slot is
 * stuck on a hung worker, waiting for its timeout), one more request is let out, up to
 * HARD_MAX_IN_FLIGHT, so one slow worker cannot stall all ingestion.
 */
export const STALL_MS = 50;
/** Batches of at least this many items are never queued (see submit). */
export const ALONE_ITEMS = 64;
export const HARD_MAX_IN_FLIGHT = 32;

const OPEN = Buffer.from('[');
const CLOSE = Buffer.from(']');
const COMMA = Buffer.from(',');
const POST = 'POST' as const;
const ITEMS_PATH = ROUTES.ingest.path;
const BATCHES_PATH = ROUTES.batches.path;

/** One client's batch waiting in the queue. */
interface Pending {
  /** Its items, when validated here; undefined for a batch only the worker validates (a *raw* one). */
  readonly items: number | undefined;
  readonly body: Buffer;
  /** The text between the outer brackets, or undefined when the body is raw or not a bare array. */
  readonly inner: Buffer | undefined;
  /** Epoch ms: the client's forward_deadline counts from its arrival, not from when its batch leaves. */
  readonly deadline: number;
  readonly resolve: (answer: ForwardResponse) => void;
  readonly reject: (err: unknown) => void;
}

function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** `[ a, b ]` → `a, b` (empty when the array is); undefined when the body is not an array. */
function innerOf(body: Buffer): Buffer | undefined {
  let start = 0;
  let end = body.length;
  while (start < end && isJsonSpace(body[start]!)) start++;
  while (end > start && isJsonSpace(body[end - 1]!)) end--;
  if (end - start < 2 || body[start] !== 0x5b || body[end - 1] !== 0x5d) return undefined;
  start++;
  end--;
  while (start < end && isJsonSpace(body[start]!)) start++;
  while (end > start && isJsonSpace(body[end - 1]!)) end--;
  return body.subarray(start, end);
}

/** One JSON array holding every member's items, made from the raw texts (no re-serialisation). */
function merge(group: readonly Pending[]): Buffer {
  const parts: Buffer[] = [OPEN];
  for (const member of group) {
    const inner = member.inner!;
    if (inner.length === 0) continue;
    if (parts.length > 1) parts.push(COMMA);
    parts.push(inner);
  }
  parts.push(CLOSE);
  return Buffer.concat(parts);
}

const ACCEPTED_CACHE: Buffer[] = [];

/** `{"accepted":n}`; the common small counts share one read-only buffer each. */
function acceptedBody(n: number): Buffer {
  if (n < 1024) return (ACCEPTED_CACHE[n] ??= Buffer.from(`{"accepted":${n}}`));
  return Buffer.from(`{"accepted":${n}}`);
}

/**
 * Merges concurrent POST /items batches into fewer upstream requests. Batches validated
 * here are joined into one JSON array: adding an item twice counts it once, and a worker
 * answers 200 only once the whole batch is durable, so a 200 for the merged batch is a
 * 200 for each part of it. Raw batches (only the worker validates them) go together to
 * `POST /internal/batches`, which answers each on its own (shared/batch-parts.ts).
 */
export class Coalescer {
  readonly #forwarder: Pick<Forwarder, 'forward'>;
  readonly #secret: (() => string) | undefined;
  #config: Config;
  /** FIFO; `#head` is the next to leave (avoids shift() on a long queue). */
  #queue: Pending[] = [];
  #head = 0;
  #inFlight = 0;
  /** Upstream requests settled so far; the stall check compares it across STALL_MS. */
  #settled = 0;
  #settledAtArm = 0;
  #stallTimer: NodeJS.Timeout | undefined;
  #idleWaiters: (() => void)[] = [];
  #closing: Promise<void> | undefined;
  /** Allocated once: called whenever an upstream request settles. */
  readonly #onUpstreamSettled = (): void => {
    this.#inFlight--;
    this.#settled++;
    this.#pump();
  };
  readonly #onStallCheck = (): void => {
    this.#stallTimer = undefined;
    this.#expireOverdue();
    if (this.#settled === this.#settledAtArm && this.#inFlight < HARD_MAX_IN_FLIGHT && this.#head < this.#queue.length) {
      this.#launch();
    }
    this.#pump();
  };

  constructor(options: CoalescerOptions) {
    this.#forwarder = options.forwarder;
    this.#secret = options.secret;
    this.#config = options.config;
  }

  setConfig(config: Config): void {
    this.#config = config;
  }

  /** Batches waiting in the queue now. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Sends a batch (`body` is its raw JSON array text) to a worker, alone or with others,
   * and resolves with the answer for this batch alone. `items` is its number of items
   * when it was validated here; undefined for a body only the worker validates (see
   * VALIDATE_BELOW_BYTES in server.ts): such raw batches are never joined into one array
   * (one unclosed string could swallow a neighbour) but sent side by side to
   * `/internal/batches`. Rejects like Forwarder.forward (`no_worker_available`,
   * `outcome_unknown` once the deadline has passed).
   */
  submit(body: Buffer, items: number | undefined): Promise<ForwardResponse> {
    // A validated batch of many items gains little from company (its per-request cost is
    // spread over its items already): it goes straight to a worker. Raw batches, 2 KiB and
    // more, do gain: every upstream request costs the coordinator and the worker an HTTP
    // exchange, and the worker a durable write.
    const alone = items === undefined ? this.#secret === undefined : items >= ALONE_ITEMS;
    if (alone || !this.#config.coalesce) return this.#forwarder.forward({ method: POST, path: ITEMS_PATH, body });
    if (this.#head === this.#queue.length && this.#inFlight < MAX_IN_FLIGHT) {
      // Nothing waiting and a free slot: the raw body goes as it came.
      this.#inFlight++;
      const answer = this.#forwarder.forward({ method: POST, path: ITEMS_PATH, body });
      answer.then(this.#onUpstreamSettled, this.#onUpstreamSettled);
      return answer;
    }
    return new Promise<ForwardResponse>((resolve, reject) => {
      const deadline = Date.now() + this.#config.forward_deadline * 1000;
      this.#queue.push({ items, body, inner: items === undefined ? undefined : innerOf(body), deadline, resolve, reject });
      this.#pump();
    });
  }

  /** Resolves once no batch is queued or in flight (call after the server stopped taking requests). */
  close(): Promise<void> {
    this.#closing ??= this.#whenIdle();
    return this.#closing;
  }

  #whenIdle(): Promise<void> {
    if (this.#inFlight === 0 && this.#head === this.#queue.length) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#head < this.#queue.length) this.#launch();
    if (this.#head < this.#queue.length) {
      if (this.#stallTimer === undefined) {
        this.#settledAtArm = this.#settled;
        this.#stallTimer = setTimeout(this.#onStallCheck, STALL_MS);
        this.#stallTimer.unref();
      }
      return;
    }
    this.#queue = [];
    this.#head = 0;
    if (this.#inFlight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Sends the next group; the caller checked the queue is not empty. */
  #launch(): void {
    const group = this.#take();
    mergedBatches.observe(group.length);
    this.#inFlight++;
    // #send settles every member itself and never rejects.
    this.#send(group).then(this.#onUpstreamSettled, this.#onUpstreamSettled);
  }

  /** Batches whose deadline passed while they waited get their 503 now rather than after a send. */
  #expireOverdue(): void {
    const now = Date.now();
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.deadline <= now) {
      this.#queue[this.#head++]!.reject(new AppError('no_worker_available', 'No worker took the batch before the deadline.'));
    }
  }

  /** The next batches (FIFO) that together fit the item and byte limits of one request. */
  #take(): Pending[] {
    const queue = this.#queue;
    const first = queue[this.#head++]!;
    const group = [first];
    if (first.items === undefined) return this.#takeRaw(group);
    if (first.inner === undefined) return group;
    const maxItems = this.#config.max_batch_items;
    const maxBytes = this.#config.max_body_bytes;
    let items = first.items;
    let bytes = 2 + first.inner.length; // the brackets
    while (this.#head < queue.length) {
      const next = queue[this.#head]!;
      if (next.inner === undefined || next.items === undefined) break;
      const extra = next.inner.length === 0 ? 0 : next.inner.length + 1; // + the comma
      if (items + next.items > maxItems || bytes + extra > maxBytes) break;
      items += next.items;
      bytes += extra;
      group.push(next);
      this.#head++;
    }
    return group;
  }

  /**
   * `group` (one raw batch) and the raw batches after it, as many as one
   * `/internal/batches` request takes: together no more than `max_body_bytes`, the limit
   * of one batch, which is also what the worker reads.
   */
  #takeRaw(group: Pending[]): Pending[] {
    const queue = this.#queue;
    const maxBytes = this.#config.max_body_bytes;
    let bytes = group[0]!.body.length;
    while (this.#head < queue.length && group.length < MAX_PARTS) {
      const next = queue[this.#head]!;
      if (next.items !== undefined || bytes + next.body.length > maxBytes) break;
      bytes += next.body.length;
      group.push(next);
      this.#head++;
    }
    return group;
  }

  /** Settles every member of `group`, exactly once each; never rejects. */
  async #send(group: Pending[]): Promise<void> {
    try {
      await this.#sendGroup(group);
    } catch (err) {
      // Not expected; settling twice is a no-op, so members already answered keep their answer.
      for (const member of group) member.reject(err);
    }
  }

  async #sendGroup(group: Pending[]): Promise<void> {
    if (group.length === 1) {
      await this.#sendAlone(group[0]!);
      return;
    }
    try {
      if (group[0]!.items === undefined) {
        if (await this.#sendRaw(group)) return;
      } else {
        // FIFO: the first member is the oldest, so its deadline is the group's.
        const answer = await this.#forwarder.forward({ method: POST, path: ITEMS_PATH, body: merge(group), deadline: group[0]!.deadline });
        if (answer.status === 200) {
          for (const member of group) member.resolve({ status: 200, body: acceptedBody(member.items!), worker: answer.worker });
          return;
        }
      }
    } catch (err) {
      // The forwarder already tried every live worker until the deadline: retrying each
      // part would break the deadline the clients were promised, so they all get its answer
      // (503, or 504 when a worker may have applied the merged batch).
      if (err instanceof AppError && (err.code === 'no_worker_available' || err.code === 'outcome_unknown')) {
        for (const member of group) member.reject(err);
        return;
      }
    }
    // Refused as a whole (a 4xx, say): each part on its own, so every client gets the real answer for its batch.
    await Promise.all(group.map((member) => this.#sendAlone(member)));
  }

  /**
   * Raw batches side by side to `/internal/batches`; false when that request was refused
   * as a whole or its answer is not one per batch (each is then sent alone). A batch
   * answered 5xx there (its log refused it: nothing stored) is sent alone too, so it gets
   * the usual retry on another worker.
   */
  async #sendRaw(group: Pending[]): Promise<boolean> {
    const bodies = group.map((member) => member.body);
    const headers = { [SECRET_HEADER]: this.#secret!(), [PARTS_HEADER]: partsHeader(bodies), 'content-type': 'application/octet-stream' };
    const answer = await this.#forwarder.forward({ method: POST, path: BATCHES_PATH, body: Buffer.concat(bodies), deadline: group[0]!.deadline, headers });
    const answers = answer.status === 200 ? decodePartAnswers(answer.body, group.length) : undefined;
    if (answers === undefined) return false;
    const retries: Promise<void>[] = [];
    group.forEach((member, i) => {
      const { status, body } = answers[i]!;
      if (status >= 500) retries.push(this.#sendAlone(member));
      else member.resolve({ status, body, worker: answer.worker });
    });
    await Promise.all(retries);
    return true;
  }

  async #sendAlone(member: Pending): Promise<void> {
    try {
      member.resolve(await this.#forwarder.forward({ method: POST, path: ITEMS_PATH, body: member.body, deadline: member.deadline }));
    } catch (err) {
      member.reject(err);
    }
  }
}
