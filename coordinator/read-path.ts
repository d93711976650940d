import type { Consistency } from '../shared/consistency.js';
import { withoutParam } from '../shared/query-params.js';
import type { CountFloors, FloorEntry } from './count-floors.js';
import type { Forwarder, ForwardResponse } from './forwarder.js';
import type { StrongReads } from './strong-read.js';

/**
 * The coordinator's counts: one worker's answer (the common path: one hop, as before),
 * after a strong read's flushes when asked for, and never below what was answered before
 * for the tenant (count-floors.ts).
 */

/** A count ready to go out. */
export interface CountAnswer {
  /**
   * The answer to write, its counts raised to the tenants' floors (which they raise in
   * turn). Call it when the answer goes out (see whenNextOnConnection), once.
   */
  settle(): ForwardResponse;
  /** The answer will not be sent (its connection closed): lets go of the tenants. */
  abandon(): void;
}

export interface ReadPathOptions {
  readonly forwarder: Pick<Forwarder, 'forward'>;
  readonly strong: Pick<StrongReads, 'prepare'>;
  readonly floors: CountFloors;
}

/** A worker's 200 that does not say what a count answer says: a bug or not one of our workers, never passed on. */
export class BadCountAnswerError extends Error {
  override name = 'BadCountAnswerError';
}

/** `{"count": N}` → N. */
function countIn(answer: ForwardResponse): number {
  let count: unknown;
  try {
    count = (JSON.parse(answer.body.toString('utf8')) as { count?: unknown } | null)?.count;
  } catch {
    // reported below
  }
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    throw new BadCountAnswerError(`${answer.worker} answered a count with ${JSON.stringify(answer.body.toString('utf8', 0, 200))}`);
  }
  return count;
}

/** `{"counts": {"a": 1, ...}}` → the count of each of `tenants`, in order. */
function countsIn(answer: ForwardResponse, tenants: readonly string[]): number[] {
  let counts: unknown;
  try {
    counts = (JSON.parse(answer.body.toString('utf8')) as { counts?: unknown } | null)?.counts;
  } catch {
    // reported below
  }
  const values = typeof counts === 'object' && counts !== null ? tenants.map((tenant) => Object.hasOwn(counts, tenant) ? (counts as Record<string, unknown>)[tenant] : undefined) : [];
  if (values.length !== tenants.length || !values.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) {
    throw new BadCountAnswerError(`${answer.worker} answered counts with ${JSON.stringify(answer.body.toString('utf8', 0, 200))}`);
  }
  return values as number[];
}

export class ReadPath {
  readonly #forwarder: ReadPathOptions['forwarder'];
  readonly #strong: ReadPathOptions['strong'];
  readonly #floors: CountFloors;

  constructor(options: ReadPathOptions) {
    this.#forwarder = options.forwarder;
    this.#strong = options.strong;
    this.#floors = options.floors;
  }

  /** One tenant's count. Rejects as the forwarder does, or with `strong_read_unavailable`. */
  async count(tenant: string, consistency: Consistency): Promise<CountAnswer> {
    const entries = [this.#floors.begin(tenant)];
    return this.#read(entries, consistency, [tenant], `/items/count?tenant=${encodeURIComponent(tenant)}`, (answer) => [countIn(answer)], ([n]) => Buffer.from(`{"count":${n}}`));
  }

  /**
   * Several tenants' counts (`GET /counts`): `query` is the client's, passed on as it came
   * but for `consistency` (the worker decodes the same tenants from it, and the URL is no
   * longer than the client's).
   */
  async counts(tenants: readonly string[], query: string, consistency: Consistency): Promise<CountAnswer> {
    const entries = tenants.map((tenant) => this.#floors.begin(tenant));
    return this.#read(entries, consistency, tenants, `/counts?${withoutParam(query, 'consistency')}`, (answer) => countsIn(answer, tenants), (settled) => {
      // No prototype: a tenant named `__proto__` is a key like any other.
      const counts = Object.create(null) as Record<string, number>;
      tenants.forEach((tenant, i) => {
        counts[tenant] = settled[i]!;
      });
      return Buffer.from(JSON.stringify({ counts }));
    });
  }

  async #read(entries: FloorEntry[], consistency: Consistency, tenants: readonly string[], path: string, read: (answer: ForwardResponse) => number[], render: (counts: readonly number[]) => Buffer): Promise<CountAnswer> {
    let answer: ForwardResponse;
    let counts: number[] | undefined;
    try {
      if (consistency === 'strong') await this.#strong.prepare(tenants);
      answer = await this.#forwarder.forward({ method: 'GET', path });
      if (answer.status === 200) counts = read(answer);
    } catch (err) {
      this.#release(entries);
      throw err;
    }
    let done = false;
    return {
      settle: () => {
        if (done) throw new Error('a count answer was settled twice');
        done = true;
        if (counts === undefined) {
          // An error answer (a bad tenant the worker refused, its storage failing): passed on as it is.
          this.#release(entries);
          return answer;
        }
        const settled = counts.map((n, i) => this.#floors.settle(entries[i]!, n));
        this.#release(entries);
        return settled.every((n, i) => n === counts[i]) ? answer : { ...answer, body: render(settled) };
      },
      abandon: () => {
        if (done) return;
        done = true;
        this.#release(entries);
      },
    };
  }

  #release(entries: readonly FloorEntry[]): void {
    for (const entry of entries) this.#floors.end(entry);
  }
}
