import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Coalescer } from '../../coordinator/coalescer.js';
import { CountFloors } from '../../coordinator/count-floors.js';
import { FORWARDED_BY_HEADER } from '../../coordinator/forwarded-by.js';
import { Forwarder, type ForwardRequest, type ForwardResponse } from '../../coordinator/forwarder.js';
import { ReadPath } from '../../coordinator/read-path.js';
import { createCoordinatorServer, VALIDATE_BELOW_BYTES, type CoordinatorServer } from '../../coordinator/server.js';
import { validateConfig, type Config } from '../../shared/config.js';
import { HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from '../../shared/server-lifecycle.js';
import { freePorts } from '../helpers/ports.js';
import { CaptureLog } from '../helpers/capture-log.js';
import { exchange } from '../helpers/raw-http.js';

const servers: CoordinatorServer[] = [];
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function post(port: number, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://127.0.0.1:${port}/items`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(20_000) });
  return { status: response.status, body: JSON.parse(await response.text()) };
}

/** Counts through `forwarder`, with no strong reads (no workers to flush here). */
function readsVia(forwarder: Pick<Forwarder, 'forward'>): ReadPath {
  return new ReadPath({ forwarder, strong: { prepare: async () => {} }, floors: new CountFloors(100) });
}

function batchOfBytes(size: number, badAt?: number): string {
  const items: unknown[] = [];
  let text = '[]';
  for (let i = 0; text.length < size; i++) {
    items.push(i === badAt ? { id: 7, tenant: 't' } : { id: `id-${i}`, tenant: 't' });
    text = JSON.stringify(items);
  }
  return text;
}

describe('the coordinator server', () => {
  it('a coordinator whose workers list is itself: 508 forwarding_loop at the first hop, one ERROR naming the URL, no retries', async () => {
    const [port] = await freePorts(1);
    const url = `http://127.0.0.1:${port}`;
    // Validation refuses this config; build it by hand to see what the first hop does when a loop gets past it.
    const base = validateConfig({ port: port! + 1, workers: [url], forward_deadline: 15 }, '/tmp');
    const config: Config = { ...base, port: port! };
    const log = new CaptureLog();
    const forwarder = new Forwarder({ log, config, liveWorkers: () => config.workers, markSuspect: () => {}, instanceId: 'self-1' });
    closers.push(() => forwarder.close());
    const coalescer = new Coalescer({ forwarder, config });
    const server = createCoordinatorServer({ config, log, reads: readsVia(forwarder), coalescer, status: () => [], instanceId: 'self-1' });
    servers.push(server);
    let requests = 0;
    server.server.on('request', () => requests++);
    await server.listen(port!, '127.0.0.1');
    const started = Date.now();
    const answer = await post(port!, '[{"id":"a","tenant":"t"}]');
    expect(answer.status).toBe(508);
    expect(answer.body.error.code).toBe('forwarding_loop');
    expect(answer.body.error.message).toMatch(/forwarded itself/);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The client's request, and the one forwarded hop: no more.
    expect(requests).toBe(2);
    const errors = log.lines.filter((line) => line.startsWith('ERROR') && line.includes('forwarding loop'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(url);
    // The id the client got finds the refusal in the log.
    expect(log.lines.some((line) => line.includes(`[${answer.body.error.id}]`))).toBe(true);
  });

  it('refuses any request that a coordinator forwarded (508), without forwarding it', async () => {
    const [port] = await freePorts(1);
    const config = validateConfig({ port, workers: 0 }, '/tmp');
    const calls: ForwardRequest[] = [];
    const fake = { forward: async (request: ForwardRequest): Promise<ForwardResponse> => { calls.push(request); return { status: 200, body: Buffer.from('{"count":0}'), worker: 'w' }; } };
    const server = createCoordinatorServer({ config, log: new CaptureLog(), reads: readsVia(fake), coalescer: { submit: async () => ({ status: 200, body: Buffer.from('{"accepted":1}'), worker: 'w' }) }, status: () => [], instanceId: 'me' });
    servers.push(server);
    await server.listen(port!, '127.0.0.1');
    const answer = await fetch(`http://127.0.0.1:${port}/items/count?tenant=t`, { headers: { [FORWARDED_BY_HEADER]: 'another-coordinator' } });
    expect(answer.status).toBe(508);
    expect(JSON.parse(await answer.text()).error.message).toMatch(/as if this coordinator were a worker/);
    expect(calls).toHaveLength(0);
    expect((await fetch(`http://127.0.0.1:${port}/items/count?tenant=t`)).status).toBe(200);
  });

  it(`validates bodies under VALIDATE_BELOW_BYTES (${VALIDATE_BELOW_BYTES} B) itself and forwards larger ones unparsed, logging the worker's refusal under its id`, async () => {
    const [port] = await freePorts(1);
    const config = validateConfig({ port, workers: 0 }, '/tmp');
    const submitted: Array<{ body: string; items: number | undefined }> = [];
    const workerRefusal = '{"error":{"code":"invalid_item","message":"Item 3: `id` must be a string, got a number.","id":"w0rk3r1d","index":3}}';
    const coalescer = {
      submit: async (body: Buffer, items: number | undefined): Promise<ForwardResponse> => {
        submitted.push({ body: body.toString(), items });
        return items === undefined ? { status: 400, body: Buffer.from(workerRefusal), worker: 'worker-9' } : { status: 200, body: Buffer.from(`{"accepted":${items}}`), worker: 'worker-9' };
      },
    };
    const log = new CaptureLog();
    const server = createCoordinatorServer({ config, log, reads: readsVia({ forward: async () => { throw new Error('not used'); } }), coalescer, status: () => [] });
    servers.push(server);
    await server.listen(port!, '127.0.0.1');

    const smallBad = batchOfBytes(VALIDATE_BELOW_BYTES - 60, 3);
    expect(smallBad.length).toBeLessThan(VALIDATE_BELOW_BYTES);
    const refused = await post(port!, smallBad);
    expect(refused.status).toBe(400);
    expect(refused.body.error.index).toBe(3);
    expect(submitted).toHaveLength(0);

    const smallGood = batchOfBytes(VALIDATE_BELOW_BYTES - 60);
    expect((await post(port!, smallGood)).body).toEqual({ accepted: JSON.parse(smallGood).length });
    expect(submitted[0]).toEqual({ body: smallGood, items: JSON.parse(smallGood).length });

    const large = batchOfBytes(VALIDATE_BELOW_BYTES, 3);
    expect(large.length).toBeGreaterThanOrEqual(VALIDATE_BELOW_BYTES);
    const passed = await post(port!, large);
    expect(passed.status).toBe(400);
    expect(JSON.stringify(passed.body)).toBe(workerRefusal);
    expect(submitted[1]).toEqual({ body: large, items: undefined });
    expect(log.lines.some((line) => line.startsWith('WARN [w0rk3r1d]') && line.includes('worker-9') && line.includes('invalid_item'))).toBe(true);
  });

  it('pipelined counts on one connection never go down: each is raised to the floor when it goes out, not when its worker answered', async () => {
    const [port] = await freePorts(1);
    const config = validateConfig({ port, workers: 0 }, '/tmp');
    // The first request's worker answers late with 9; the second's at once with 5 (it read the store earlier).
    const answers = [{ count: 9, delayMs: 150 }, { count: 5, delayMs: 0 }, { count: 7, delayMs: 0 }];
    const paths: string[] = [];
    const forwarder = {
      forward: async (request: ForwardRequest): Promise<ForwardResponse> => {
        paths.push(request.path);
        const { count, delayMs } = answers[paths.length - 1]!;
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        return { status: 200, body: Buffer.from(request.path.startsWith('/counts') ? `{"counts":{"t":${count}}}` : `{"count":${count}}`), worker: 'w' };
      },
    };
    const server = createCoordinatorServer({ config, log: new CaptureLog(), reads: readsVia(forwarder), coalescer: { submit: async () => { throw new Error('not used'); } }, status: () => [] });
    servers.push(server);
    await server.listen(port!, '127.0.0.1');
    const request = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const { responses } = await exchange(port!, request('/items/t/count') + request('/items/count?tenant=t&consistency=eventual') + request('/counts?tenant=t&consistency=eventual'), { halfClose: true });
    expect(responses.map((response) => JSON.parse(response.body))).toEqual([{ count: 9 }, { count: 9 }, { counts: { t: 9 } }]);
    // The worker was asked without `consistency` (the coordinator handled it) and with the tenant as the client named it.
    expect(paths).toEqual(['/items/count?tenant=t', '/items/count?tenant=t', '/counts?tenant=t']);
  });

  it('runs on an http.Server with our timeouts, answering a half-closed request', () => {
    const server = createCoordinatorServer({ config: validateConfig({ workers: 0 }, '/tmp'), log: new CaptureLog(), reads: readsVia({ forward: async () => { throw new Error('x'); } }), coalescer: { submit: async () => { throw new Error('x'); } }, status: () => [] });
    const raw = server.server as http.Server & { httpAllowHalfOpen?: boolean };
    expect(raw.keepAliveTimeout).toBe(KEEP_ALIVE_TIMEOUT_MS);
    expect(raw.headersTimeout).toBe(HEADERS_TIMEOUT_MS);
    expect(raw.requestTimeout).toBe(REQUEST_TIMEOUT_MS);
    expect(raw.httpAllowHalfOpen).toBe(true);
    // Node requires it, and clients close idle connections first when it exceeds their 60 s.
    expect(HEADERS_TIMEOUT_MS).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS);
    expect(KEEP_ALIVE_TIMEOUT_MS).toBeGreaterThan(60_000);
  });
});
