import { describe, expect, it } from 'vitest';
import { mapSettledLimit } from '../../shared/map-settled-limit.js';

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every already-queued microtask and one macrotask turn run. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('mapSettledLimit', () => {
  it('never runs more than `limit` at once and starts the next as one finishes', async () => {
    const count = 10;
    const limit = 3;
    const gates = Array.from({ length: count }, () => deferred<number>());
    const started: number[] = [];
    let running = 0;
    let maxRunning = 0;

    const done = mapSettledLimit([...Array(count).keys()], limit, async (i) => {
      started.push(i);
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        return await gates[i]!.promise;
      } finally {
        running--;
      }
    });

    await tick();
    expect(started).toEqual([0, 1, 2]);
    expect(running).toBe(limit);

    // Finish them out of order; each completion lets exactly one more start.
    gates[1]!.resolve(10);
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    expect(running).toBe(limit);

    gates[3]!.resolve(30);
    gates[0]!.resolve(0);
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
    expect(running).toBe(limit);

    for (let i = count - 1; i >= 0; i--) gates[i]!.resolve(i * 10);
    const results = await done;

    expect(maxRunning).toBe(limit);
    expect(running).toBe(0);
    expect(results).toEqual(Array.from({ length: count }, (_, i) => ({ status: 'fulfilled', value: i * 10 })));
  });

  it('returns results in input order whatever the completion order', async () => {
    const delays = [30, 5, 20, 0, 10, 25, 1];
    const results = await mapSettledLimit(delays, 3, (ms) => new Promise<string>((resolve) => setTimeout(() => resolve(`done ${ms}`), ms)));
    expect(results).toEqual(delays.map((ms) => ({ status: 'fulfilled', value: `done ${ms}` })));
  });

  it('reports rejections instead of throwing, and keeps going', async () => {
    const boom = new Error('boom');
    const calls: number[] = [];
    const results = await mapSettledLimit([1, 2, 3, 4, 5], 2, async (n) => {
      calls.push(n);
      if (n % 2 === 0) throw boom;
      return n;
    });
    expect(calls.sort()).toEqual([1, 2, 3, 4, 5]);
    expect(results).toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'rejected', reason: boom },
      { status: 'fulfilled', value: 3 },
      { status: 'rejected', reason: boom },
      { status: 'fulfilled', value: 5 },
    ]);
  });

  it('reports a synchronous throw of `work` as a rejection', async () => {
    const results = await mapSettledLimit(['a'], 1, (() => {
      throw new TypeError('sync');
    }) as (input: string) => Promise<never>);
    expect(results).toHaveLength(1);
    expect(results[0]!.status).toBe('rejected');
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(TypeError);
  });

  it('resolves to an empty list for empty input without calling work', async () => {
    let called = false;
    const results = await mapSettledLimit([], 4, async () => {
      called = true;
    });
    expect(results).toEqual([]);
    expect(called).toBe(false);
  });

  it('runs everything at once when the limit exceeds the input', async () => {
    let running = 0;
    let maxRunning = 0;
    const gate = deferred<void>();
    const done = mapSettledLimit([1, 2, 3], 100, async (n) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await gate.promise;
      running--;
      return n;
    });
    await tick();
    expect(running).toBe(3);
    gate.resolve();
    expect((await done).map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(maxRunning).toBe(3);
  });

  it('runs strictly one after another with limit 1', async () => {
    const order: string[] = [];
    await mapSettledLimit(['a', 'b', 'c'], 1, async (x) => {
      order.push(`start ${x}`);
      await tick();
      order.push(`end ${x}`);
    });
    expect(order).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });
});
