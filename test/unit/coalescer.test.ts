import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ALONE_ITEMS, Coalescer, HARD_MAX_IN_FLIGHT, MAX_IN_FLIGHT, STALL_MS } from '../../coordinator/coalescer.js';
import type { ForwardRequest, ForwardResponse } from '../../coordinator/forwarder.js';
import { validateConfig, type Config } from '../../shared/config.js';
import { PARTS_HEADER } from '../../shared/batch-parts.js';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { AppError } from '../../shared/errors.js';

/** A forwarder whose every upstream request waits until the test settles it. */
class FakeForwarder {
  readonly calls: Array<{ request: ForwardRequest; resolve: (answer: ForwardResponse) => void; reject: (err: unknown) => void }> = [];

  forward(request: ForwardRequest): Promise<ForwardResponse> {
    return new Promise((resolve, reject) => this.calls.push({ request, resolve, reject }));
  }

  bodies(): string[] {
    return this.calls.map((call) => String(call.request.body));
  }
}

function config(overrides: Record<string, unknown> = {}): Config {
  return validateConfig({ workers: 0, forward_deadline: 15, forward_timeout: 5, ...overrides }, '/tmp');
}

const ok = (n: number): ForwardResponse => ({ status: 200, body: Buffer.from(`{"accepted":${n}}`), worker: 'worker-1' });

/** A valid batch body of `n` items of `tenant`, as a client would send it. */
function batch(tenant: string, n = 1): Buffer {
  return Buffer.from(JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: `${tenant}-${i}`, tenant }))));
}

/** Lets the promise callbacks run (the coalescer reacts to settled upstream requests in them). */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

let forwarder: FakeForwarder;

beforeEach(() => {
  vi.useFakeTimers();
  forwarder = new FakeForwarder();
});

afterEach(() => {
  vi.useRealTimers();
});

/** Fills every upstream slot with a batch of its own; returns their answers. */
function fillSlots(coalescer: Coalescer): Promise<ForwardResponse>[] {
  return Array.from({ length: MAX_IN_FLIGHT }, (_, i) => coalescer.submit(batch(`slot${i}`), 1));
}

describe('Coalescer', () => {
  it(`sends the first ${MAX_IN_FLIGHT} batches at once, each as it came, and queues the next`, async () => {
    const coalescer = new Coalescer({ forwarder, config: config() });
    const answers = fillSlots(coalescer);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT);
    expect(forwarder.bodies()).toEqual(Array.from({ length: MAX_IN_FLIGHT }, (_, i) => batch(`slot${i}`).toString()));
    void coalescer.submit(batch('queued'), 1);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT);
    forwarder.calls[0]!.resolve(ok(1));
    expect(await answers[0]).toEqual(ok(1));
  });

  it('merges the batches that queued while every slot was busy into one upstream array; each client gets its own count', async () => {
    const coalescer = new Coalescer({ forwarder, config: config() });
    fillSlots(coalescer);
    const queued = [coalescer.submit(batch('a', 2), 2), coalescer.submit(Buffer.from(' [ ] '), 0), coalescer.submit(batch('b', 3), 3)];
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT + 1);
    const merged = forwarder.calls[MAX_IN_FLIGHT]!;
    expect(JSON.parse(String(merged.request.body))).toEqual([...JSON.parse(batch('a', 2).toString()), ...JSON.parse(batch('b', 3).toString())]);
    merged.resolve(ok(5));
    const answers = await Promise.all(queued);
    expect(answers.map((answer) => [answer.status, JSON.parse(answer.body.toString())])).toEqual([[200, { accepted: 2 }], [200, { accepted: 0 }], [200, { accepted: 3 }]]);
  });

  it('a merged request keeps to max_batch_items and max_body_bytes (the rest leaves in the next one)', async () => {
    const coalescer = new Coalescer({ forwarder, config: config({ max_batch_items: 5 }) });
    fillSlots(coalescer);
    for (const name of ['a', 'b', 'c']) void coalescer.submit(batch(name, 2), 2);
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    expect(JSON.parse(forwarder.bodies()[MAX_IN_FLIGHT]!)).toHaveLength(4);
    forwarder.calls[1]!.resolve(ok(1));
    await flush();
    expect(JSON.parse(forwarder.bodies()[MAX_IN_FLIGHT + 1]!)).toHaveLength(2);
  });

  it(`a batch of ALONE_ITEMS (${ALONE_ITEMS}) or more, or one not validated here when there is no cluster secret, never waits for a slot`, async () => {
    const coalescer = new Coalescer({ forwarder, config: config() });
    fillSlots(coalescer);
    void coalescer.submit(batch('small', ALONE_ITEMS - 1), ALONE_ITEMS - 1);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT);
    void coalescer.submit(batch('big', ALONE_ITEMS), ALONE_ITEMS);
    void coalescer.submit(Buffer.from('[{"id":"raw","tenant":"t"}]'), undefined);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT + 2);
  });

  it('with coalesce off, every batch goes at once as it came', () => {
    const coalescer = new Coalescer({ forwarder, config: config({ coalesce: false }) });
    for (let i = 0; i < MAX_IN_FLIGHT * 2; i++) void coalescer.submit(batch(`b${i}`), 1);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT * 2);
  });

  it(`stall escape: when no upstream request settles for STALL_MS (${STALL_MS} ms), one more leaves, up to HARD_MAX_IN_FLIGHT (${HARD_MAX_IN_FLIGHT})`, async () => {
    // One item per request, so the escapes cannot merge what waits into one.
    const coalescer = new Coalescer({ forwarder, config: config({ max_batch_items: 1, forward_deadline: 3600, forward_timeout: 3600 }) });
    fillSlots(coalescer);
    for (let i = 0; i < HARD_MAX_IN_FLIGHT + 5; i++) void coalescer.submit(batch(`q${i}`, 1), 1);
    await vi.advanceTimersByTimeAsync(STALL_MS - 1);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT);
    await vi.advanceTimersByTimeAsync(1);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT + 1);
    await vi.advanceTimersByTimeAsync(STALL_MS);
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT + 2);
    await vi.advanceTimersByTimeAsync(STALL_MS * (HARD_MAX_IN_FLIGHT + 10));
    expect(forwarder.calls).toHaveLength(HARD_MAX_IN_FLIGHT);
    // Once one settles, the normal limit applies again: nothing more leaves until in-flight drops below it.
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    expect(forwarder.calls).toHaveLength(HARD_MAX_IN_FLIGHT);
  });

  it('a batch whose forward_deadline passes while it waits gets no_worker_available without being sent', async () => {
    const coalescer = new Coalescer({ forwarder, config: config({ max_batch_items: 1, forward_deadline: 10, forward_timeout: 1 }) });
    fillSlots(coalescer);
    // Every slot and every stall escape stuck.
    for (let i = MAX_IN_FLIGHT; i < HARD_MAX_IN_FLIGHT; i++) void coalescer.submit(batch(`stuck${i}`), 1);
    await vi.advanceTimersByTimeAsync(STALL_MS * (HARD_MAX_IN_FLIGHT + 2));
    expect(forwarder.calls).toHaveLength(HARD_MAX_IN_FLIGHT);
    const late = coalescer.submit(batch('late'), 1);
    const settled = late.then(() => 'resolved', (err: unknown) => err);
    await vi.advanceTimersByTimeAsync(9_900);
    expect(await Promise.race([settled, Promise.resolve('pending')])).toBe('pending');
    await vi.advanceTimersByTimeAsync(STALL_MS * 3);
    const err = await settled;
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('no_worker_available');
    expect(forwarder.bodies().some((body) => body.includes('late'))).toBe(false);
  });

  it('a merged request refused with a 4xx is split: each batch is sent alone and gets its own answer', async () => {
    const coalescer = new Coalescer({ forwarder, config: config() });
    fillSlots(coalescer);
    const good = coalescer.submit(batch('good', 2), 2);
    const bad = coalescer.submit(batch('bad', 1), 1);
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    const merged = forwarder.calls[MAX_IN_FLIGHT]!;
    merged.resolve({ status: 400, body: Buffer.from('{"error":{"code":"invalid_item","message":"Item 2: x.","id":"i","index":2}}'), worker: 'w' });
    await flush();
    const alone = forwarder.calls.slice(MAX_IN_FLIGHT + 1);
    expect(alone.map((call) => String(call.request.body))).toEqual([batch('good', 2).toString(), batch('bad', 1).toString()]);
    // Each part keeps the deadline of its arrival.
    expect(alone.every((call) => call.request.deadline === merged.request.deadline)).toBe(true);
    alone[0]!.resolve(ok(2));
    const badAnswer = { status: 400, body: Buffer.from('{"error":{"code":"invalid_item","message":"Item 0: x.","id":"j","index":0}}'), worker: 'w' };
    alone[1]!.resolve(badAnswer);
    expect(await good).toEqual(ok(2));
    expect(await bad).toEqual(badAnswer);
  });

  it.each(['no_worker_available', 'outcome_unknown'] as const)('a merged request that ends in %s gives every member that answer (no resend past the deadline)', async (code) => {
    const coalescer = new Coalescer({ forwarder, config: config() });
    fillSlots(coalescer);
    const members = [coalescer.submit(batch('m1'), 1), coalescer.submit(batch('m2'), 1)];
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    forwarder.calls[MAX_IN_FLIGHT]!.reject(new AppError(code));
    for (const member of members) await expect(member).rejects.toMatchObject({ code });
    await flush();
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT + 1);
  });

  it('close() resolves once nothing is queued or in flight', async () => {
    const coalescer = new Coalescer({ forwarder, config: config() });
    fillSlots(coalescer);
    void coalescer.submit(batch('q'), 1);
    let closed = false;
    const closing = coalescer.close().then(() => {
      closed = true;
    });
    expect(coalescer.close()).toBe(coalescer.close());
    for (let i = 0; i < MAX_IN_FLIGHT; i++) {
      forwarder.calls[i]!.resolve(ok(1));
      await flush();
    }
    expect(closed).toBe(false);
    forwarder.calls[MAX_IN_FLIGHT]!.resolve(ok(1));
    await closing;
    expect(closed).toBe(true);
  });
});

describe('Coalescer: batches only a worker validates (raw), with the cluster secret', () => {
  const raw = (tenant: string, n = 1): Buffer => batch(tenant, n);
  const partsAnswer = (answers: unknown[]): ForwardResponse => ({ status: 200, body: Buffer.from(JSON.stringify({ answers })), worker: 'worker-2' });
  const make = (): Coalescer => new Coalescer({ forwarder, config: config(), secret: () => 'the-secret-0123456789' });

  it('go side by side to /internal/batches, with the secret and their lengths; each client gets its own answer', async () => {
    const coalescer = make();
    fillSlots(coalescer);
    const bodies = [raw('a', 100), raw('b', 3), Buffer.from('[{"id":1}]')];
    const answers = bodies.map((body) => coalescer.submit(body, undefined));
    expect(forwarder.calls).toHaveLength(MAX_IN_FLIGHT);
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    const together = forwarder.calls[MAX_IN_FLIGHT]!;
    expect(together.request.path).toBe('/internal/batches');
    expect(together.request.headers?.[SECRET_HEADER]).toBe('the-secret-0123456789');
    expect(together.request.headers?.[PARTS_HEADER]).toBe(bodies.map((body) => body.length).join(','));
    expect(Buffer.compare(together.request.body as Buffer, Buffer.concat(bodies))).toBe(0);
    const invalid = { error: { code: 'invalid_item', message: 'Item 0: `id` must be a string.', id: 'e1', index: 0 } };
    together.resolve(partsAnswer([[200, { accepted: 100 }], [200, { accepted: 3 }], [400, invalid]]));
    const got = await Promise.all(answers);
    expect(got.map((answer) => [answer.status, JSON.parse(answer.body.toString()), answer.worker])).toEqual([
      [200, { accepted: 100 }, 'worker-2'],
      [200, { accepted: 3 }, 'worker-2'],
      [400, invalid, 'worker-2'],
    ]);
  });

  it('a batch answered 5xx inside (its log refused it) is sent again alone, through the usual retries', async () => {
    const coalescer = make();
    fillSlots(coalescer);
    const answers = [coalescer.submit(raw('a'), undefined), coalescer.submit(raw('b'), undefined)];
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    forwarder.calls[MAX_IN_FLIGHT]!.resolve(partsAnswer([[200, { accepted: 1 }], [503, { error: { code: 'storage_unavailable', message: 'x', id: 'e2' } }]]));
    await flush();
    const again = forwarder.calls[MAX_IN_FLIGHT + 1]!;
    expect(again.request.path).toBe('/items');
    expect(String(again.request.body)).toBe(raw('b').toString());
    again.resolve(ok(1));
    expect((await answers[1]!).status).toBe(200);
    expect((await answers[0]!).status).toBe(200);
  });

  it.each([
    ['refused as a whole (404 from an older worker)', { status: 404, body: Buffer.from('{"error":{"code":"not_found"}}'), worker: 'w' }],
    ['answered with fewer answers than batches', partsAnswer([[200, { accepted: 1 }]])],
    ['answered with something that is not JSON', { status: 200, body: Buffer.from('<html>'), worker: 'w' }],
  ])('%s: each batch is sent alone to /items', async (_name, answer) => {
    const coalescer = make();
    fillSlots(coalescer);
    const answers = [coalescer.submit(raw('a'), undefined), coalescer.submit(raw('b'), undefined)];
    forwarder.calls[0]!.resolve(ok(1));
    await flush();
    forwarder.calls[MAX_IN_FLIGHT]!.resolve(answer);
    await flush();
    const alone = forwarder.calls.slice(MAX_IN_FLIGHT + 1);
    expect(alone.map((call) => [call.request.path, String(call.request.body)])).toEqual([['/items', raw('a').toString()], ['/items', raw('b').toString()]]);
    for (const call of alone) call.resolve(ok(1));
    expect((await Promise.all(answers)).map((a) => a.status)).toEqual([200, 200]);
  });

  it('raw and validated batches never share a request', async () => {
    const coalescer = make();
    fillSlots(coalescer);
    void coalescer.submit(batch('v1'), 1);
    void coalescer.submit(raw('r1'), undefined);
    void coalescer.submit(raw('r2'), undefined);
    void coalescer.submit(batch('v2'), 1);
    forwarder.calls[0]!.resolve(ok(1));
    forwarder.calls[1]!.resolve(ok(1));
    await flush();
    expect(forwarder.calls.slice(MAX_IN_FLIGHT).map((call) => call.request.path)).toEqual(['/items', '/internal/batches']);
    forwarder.calls[MAX_IN_FLIGHT]!.resolve(ok(1));
    await flush();
    expect(forwarder.calls.slice(MAX_IN_FLIGHT + 2).map((call) => String(call.request.body))).toEqual([batch('v2').toString()]);
  });
});
