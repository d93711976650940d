/**
 * HTTP edge cases against one real cluster, over raw TCP (node:net) so the test sees
 * exactly which answers are on the wire: every answer belongs to its request (pipelining
 * behind a malformed request, behind a 413, behind `Connection: close`; a client that
 * half-closes), one parser for every form of the count route, and the batches existing
 * clients send (any content type but media and forms-with-files, keys in any letter case).
 * Each case then checks what every worker counts, asked directly.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, stopAllClusters, type Cluster } from '../helpers/cluster.js';
import { exchange, requestBytes, type WireResponse } from '../helpers/raw-http.js';

const MAX_BODY = 65_536;
/** worker_persist is 1 s in the harness; the README's bound is worker_persist + 1 s. */
const CONVERGE_MS = 2_000;
/** What a check that nothing was stored waits: past the convergence bound, with room for a slow machine. */
const NOTHING_STORED_WAIT_MS = CONVERGE_MS + 1_000;
/** Generous: a slow machine, not a figure. */
const CONVERGE_TIMEOUT_MS = 10_000;

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ workers: 2, config: { max_body_bytes: MAX_BODY } });
});

afterAll(stopAllClusters);

interface Target {
  readonly name: 'coordinator' | 'worker';
  readonly port: number;
}

function targets(): Target[] {
  return [
    { name: 'coordinator', port: cluster.port },
    { name: 'worker', port: Number(new URL(cluster.workerUrls[0]!).port) },
  ];
}

let tenantSerial = 0;
/** A tenant no other case uses. */
function fresh(label: string): string {
  return `edge-${tenantSerial++}-${label}`;
}

function items(tenant: string, n: number): string {
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: `i${i}`, tenant })));
}

function postBytes(body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }): Buffer {
  return requestBytes('POST', '/items', { headers, body });
}

/** The counts of `tenant` on every worker, asked directly. */
async function countsOnWorkers(tenant: string): Promise<number[]> {
  return Promise.all(cluster.workerUrls.map((url) => cluster.count(tenant, url)));
}

async function expectCountedEverywhere(tenant: string, expected: number): Promise<void> {
  await cluster.waitFor(async () => (await countsOnWorkers(tenant)).every((count) => count === expected), CONVERGE_TIMEOUT_MS, `every worker to count ${expected} for ${tenant}`);
}

/** After the convergence bound (and a margin), no worker counts anything for `tenant`. */
async function expectStoredNowhere(tenants: readonly string[]): Promise<void> {
  await sleep(NOTHING_STORED_WAIT_MS);
  for (const tenant of tenants) expect(await countsOnWorkers(tenant), `${tenant} was stored`).toEqual(cluster.workerUrls.map(() => 0));
}

function expectAccepted(response: WireResponse | undefined, n: number, where: string): void {
  expect(response?.status, `${where}: ${JSON.stringify(response)}`).toBe(200);
  expect(JSON.parse(response!.body), where).toEqual({ accepted: n });
}

function expectJsonError(response: WireResponse | undefined, status: number, code: string, where: string): void {
  expect(response?.status, `${where}: ${JSON.stringify(response)}`).toBe(status);
  expect(response!.headers['content-type'], where).toMatch(/^application\/json/);
  const body = JSON.parse(response!.body);
  expect(body.error.code, where).toBe(code);
  expect(typeof body.error.id, where).toBe('string');
}

function show(wire: { raw: string }): string {
  return JSON.stringify(wire.raw.length > 600 ? `${wire.raw.slice(0, 600)}...` : wire.raw);
}

describe('every answer belongs to its request (raw sockets)', () => {
  it.each([
    ['a bad request line', 'NOT HTTP AT ALL\r\n\r\n'],
    ['headers over 16 KB', `GET /items/count?tenant=x HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`],
  ])('1. a valid POST followed by %s: the POST gets its 200, then the 400, and its items are stored', async (_label, bad) => {
    const cases = targets().map((target) => ({ target, tenant: fresh(`pipelined-bad-${target.name}`) }));
    await Promise.all(cases.map(async ({ target, tenant }) => {
      const wire = await exchange(target.port, Buffer.concat([postBytes(items(tenant, 3)), Buffer.from(bad, 'latin1')]));
      console.log(`[1] ${target.name} wire: ${show(wire)}`);
      expect(wire.responses, show(wire)).toHaveLength(2);
      expectAccepted(wire.responses[0], 3, `${target.name} first answer`);
      expectJsonError(wire.responses[1], 400, 'bad_request', `${target.name} second answer`);
      expect(wire.closedByServer).toBe(true);
    }));
    for (const { tenant } of cases) await expectCountedEverywhere(tenant, 3);
  });

  it('1b. two valid pipelined POSTs then a bad request line: both answers in order, then the 400', async () => {
    for (const target of targets()) {
      const [a, b] = [fresh(`order-a-${target.name}`), fresh(`order-b-${target.name}`)];
      const wire = await exchange(target.port, Buffer.concat([postBytes(items(a, 2)), postBytes(items(b, 5)), Buffer.from('BAD\r\n\r\n')]));
      console.log(`[1b] ${target.name} wire: ${show(wire)}`);
      expect(wire.responses.map((response) => response.status), show(wire)).toEqual([200, 200, 400]);
      expectAccepted(wire.responses[0], 2, 'first');
      expectAccepted(wire.responses[1], 5, 'second');
      await expectCountedEverywhere(a, 2);
      await expectCountedEverywhere(b, 5);
    }
  });

  it('2. POSTs pipelined behind a 413 (Content-Length over the limit) are not applied: one answer, then close', async () => {
    const behind: string[] = [];
    await Promise.all(targets().map(async (target) => {
      const tenant = fresh(`behind-413-${target.name}`);
      behind.push(tenant);
      const tooLarge = postBytes(`[${' '.repeat(MAX_BODY)}]`);
      const wire = await exchange(target.port, Buffer.concat([tooLarge, postBytes(items(tenant, 4)), postBytes(items(tenant, 6))]));
      console.log(`[2] ${target.name} wire: ${show(wire)}`);
      expect(wire.responses, show(wire)).toHaveLength(1);
      expectJsonError(wire.responses[0], 413, 'body_too_large', `${target.name} answer`);
      expect(wire.responses[0]!.headers.connection).toBe('close');
      expect(wire.closedByServer).toBe(true);
    }));
    await expectStoredNowhere(behind);
  });

  it('2b. a POST pipelined behind a chunked body that passes the limit is not applied', async () => {
    const behind: string[] = [];
    await Promise.all(targets().map(async (target) => {
      const tenant = fresh(`behind-chunked-${target.name}`);
      behind.push(tenant);
      const piece = ' '.repeat(8192);
      const chunked = `${Array.from({ length: 10 }, () => `${piece.length.toString(16)}\r\n${piece}\r\n`).join('')}0\r\n\r\n`;
      const first = requestBytes('POST', '/items', { headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: `1\r\n[\r\n${chunked}` });
      const wire = await exchange(target.port, Buffer.concat([first, postBytes(items(tenant, 4))]));
      console.log(`[2b] ${target.name} wire: ${show(wire)}`);
      expect(wire.responses, show(wire)).toHaveLength(1);
      expectJsonError(wire.responses[0], 413, 'body_too_large', `${target.name} answer`);
    }));
    await expectStoredNowhere(behind);
  });

  it("2c. a POST pipelined behind the client's own `Connection: close` is not applied", async () => {
    const behind: string[] = [];
    await Promise.all(targets().map(async (target) => {
      const [first, second] = [fresh(`close-first-${target.name}`), fresh(`close-second-${target.name}`)];
      behind.push(second);
      const wire = await exchange(target.port, Buffer.concat([
        postBytes(items(first, 2), { 'content-type': 'application/json', connection: 'close' }),
        postBytes(items(second, 3)),
      ]));
      console.log(`[2c] ${target.name} wire: ${show(wire)}`);
      expect(wire.responses, show(wire)).toHaveLength(1);
      expectAccepted(wire.responses[0], 2, `${target.name} answer`);
      await expectCountedEverywhere(first, 2);
    }));
    await expectStoredNowhere(behind);
  });

  it('3. a client that half-closes right after its POST gets its answer, then the connection closes; the items are stored', async () => {
    for (const target of targets()) {
      const [a, b] = [fresh(`half-close-a-${target.name}`), fresh(`half-close-b-${target.name}`)];
      const wire = await exchange(target.port, Buffer.concat([postBytes(items(a, 3)), postBytes(items(b, 1))]), { halfClose: true });
      console.log(`[3] ${target.name} wire: ${show(wire)}`);
      expect(wire.responses.map((response) => response.status), show(wire)).toEqual([200, 200]);
      expectAccepted(wire.responses[0], 3, 'first');
      expectAccepted(wire.responses[1], 1, 'second');
      expect(wire.closedByServer).toBe(true);
      await expectCountedEverywhere(a, 3);
      await expectCountedEverywhere(b, 1);
    }
  });
});

describe('one parser for every form of the count route', () => {
  /** Tenants that each break some naive parser; each gets its own count (index + 1). */
  const TENANTS = ['?', 'q?x', '&', 'a&b=c', '=', '#', 'x#y', '%', '100%25', '/', 'a/b', '.', '..', ' ', 'a b', '+', 'é✓𝄞', 'テナント ?&=#%/', '..%2F..'];

  /** Percent-encodes only what must be, leaving `?`, `=`, `/` and `.` as they are. */
  const lightQuery = (tenant: string): string => [...tenant].map((char) => (/^[A-Za-z0-9?=/.\-_~!$'()*,;:@]$/.test(char) ? char : encodeURIComponent(char))).join('');

  function forms(tenant: string): string[] {
    const segment = encodeURIComponent(tenant);
    const query = encodeURIComponent(tenant);
    return [
      `/items/${segment}/count`,
      `/items/${segment}/count/`,
      `/items/${segment.replaceAll('.', '%2E')}/count`,
      `/items/count?tenant=${query}`,
      `/items/count/?tenant=${query}`,
      `/items/count?tenant=${lightQuery(tenant)}`,
      `/items/count/?tenant=${lightQuery(tenant)}`,
      `/items/count?other=1&tenant=${query}&x=y?z`,
    ];
  }

  beforeAll(async () => {
    const batch = TENANTS.flatMap((tenant, i) => Array.from({ length: i + 1 }, (_, k) => ({ id: `id-${k}`, tenant })));
    const posted = await cluster.post(batch);
    expect(posted.status, JSON.stringify(posted.body)).toBe(200);
    for (const [i, tenant] of TENANTS.entries()) await expectCountedEverywhere(tenant, i + 1);
  });

  it.each(TENANTS.map((tenant, i) => [tenant, i + 1] as const))('%j: every form, GET and HEAD, on the coordinator and every worker, counts %i', async (tenant, expected) => {
    const ports = [cluster.port, ...cluster.workerUrls.map((url) => Number(new URL(url).port))];
    for (const port of ports) {
      const targetsOfTenant = forms(tenant);
      // One connection per port: every form as GET then HEAD, pipelined; the answers come in order.
      const bytes = Buffer.concat(targetsOfTenant.flatMap((target) => [requestBytes('GET', target), requestBytes('HEAD', target)]).concat([requestBytes('GET', '/', { headers: { connection: 'close' } })]));
      const wire = await exchange(port, bytes, { headResponses: targetsOfTenant.map((_, i) => 2 * i + 1) });
      expect(wire.responses, show(wire)).toHaveLength(2 * targetsOfTenant.length + 1);
      targetsOfTenant.forEach((target, i) => {
        const get = wire.responses[2 * i]!;
        const head = wire.responses[2 * i + 1]!;
        const where = `port ${port} GET ${target}`;
        expect(get.status, `${where}: ${get.body}`).toBe(200);
        expect(JSON.parse(get.body), where).toEqual({ count: expected });
        expect(head.status, `HEAD ${target}`).toBe(200);
        expect(head.body, `HEAD ${target} has no body`).toBe('');
        expect(head.headers['content-type'], `HEAD ${target}`).toBe(get.headers['content-type']);
        expect(head.headers['content-length'], `HEAD ${target}`).toBe(get.headers['content-length']);
      });
    }
  });

  it('a request target in absolute form (`GET http://evil/items/t/count`, RFC 9112 3.2.2) is routed by its path and query, on the coordinator and every worker', async () => {
    const tenant = fresh('absolute form');
    const posted = await exchange(cluster.port, requestBytes('POST', 'http://evil/items', { headers: { 'content-type': 'application/json', connection: 'close' }, body: items(tenant, 3) }));
    expectAccepted(posted.responses[0], 3, `POST http://evil/items: ${show(posted)}`);
    await expectCountedEverywhere(tenant, 3);
    const encoded = encodeURIComponent(tenant);
    const ports = [cluster.port, ...cluster.workerUrls.map((url) => Number(new URL(url).port))];
    for (const port of ports) {
      const wire = await exchange(port, Buffer.concat([
        requestBytes('GET', `http://evil/items/${encoded}/count`),
        requestBytes('GET', `http://127.0.0.1:${port}/items/count?tenant=${encoded}`),
        requestBytes('HEAD', `HTTP://evil:80/items/${encoded}/count/`),
        requestBytes('GET', `http://evil/counts?tenant=${encoded}&tenant=nobody`),
        requestBytes('GET', 'http://evil/openapi.json'), // an operations page (express)
        requestBytes('GET', 'http://evil'),
        requestBytes('GET', 'http://evil/nope', { headers: { connection: 'close' } }),
      ]), { headResponses: [2] });
      console.log(`[absolute form] port ${port} statuses: ${wire.responses.map((response) => response.status).join(' ')}`);
      expect(wire.responses.map((response) => response.status), show(wire)).toEqual([200, 200, 200, 200, 200, 200, 404]);
      expect(JSON.parse(wire.responses[0]!.body)).toEqual({ count: 3 });
      expect(JSON.parse(wire.responses[1]!.body)).toEqual({ count: 3 });
      expect(JSON.parse(wire.responses[3]!.body)).toEqual({ counts: { [tenant]: 3, nobody: 0 } });
      expect(JSON.parse(wire.responses[4]!.body).openapi).toMatch(/^3\.1/);
      expect(JSON.parse(wire.responses[5]!.body).status).toBe('ok');
      // An unknown route is named by its path, as in origin form.
      expect(JSON.parse(wire.responses[6]!.body).error.message).toBe('No route for GET /nope.');
    }
  });

  it('HEAD and a trailing slash answer like GET on the other routes too (health, 404, 405)', async () => {
    const wire = await exchange(cluster.port, Buffer.concat([
      requestBytes('GET', '/'), requestBytes('HEAD', '/'),
      requestBytes('GET', '/nope'), requestBytes('HEAD', '/nope'),
      requestBytes('GET', '/items'), requestBytes('GET', '/items/'), requestBytes('HEAD', '/items/'),
      requestBytes('POST', '/items/', { headers: { 'content-type': 'application/json', connection: 'close' }, body: '[]' }),
    ]), { headResponses: [1, 3, 6] });
    console.log(`[HEAD/slash] statuses: ${wire.responses.map((response) => response.status).join(' ')}`);
    expect(wire.responses.map((response) => response.status)).toEqual([200, 200, 404, 404, 405, 405, 405, 200]);
    expect(wire.responses[1]!.headers['content-length']).toBe(wire.responses[0]!.headers['content-length']);
    expect(wire.responses[5]!.headers.allow).toBe('POST');
    expect(JSON.parse(wire.responses[7]!.body)).toEqual({ accepted: 0 });
  });
});

describe('the batches existing clients send', () => {
  it.each([
    ['no Content-Type', undefined],
    ["curl -d's form type", 'application/x-www-form-urlencoded'],
    ['text/plain', 'text/plain'],
    ['text/html', 'text/html; charset=utf-8'],
    ['application/octet-stream', 'application/octet-stream'],
    ['JSON with a charset', 'application/json; charset=UTF-8'],
    ['a +json type', 'application/vnd.countapp+json'],
  ])('a valid batch with %s is accepted and counted (coordinator, worker, small and large bodies)', async (_label, type) => {
    const cases = targets().flatMap((target) => [3, 80].map((size) => ({ target, size, tenant: fresh(`type-${size}-${target.name}`) })));
    await Promise.all(cases.map(async ({ target, size, tenant }) => {
      const headers: Record<string, string> = type === undefined ? { connection: 'close' } : { 'content-type': type, connection: 'close' };
      const wire = await exchange(target.port, postBytes(items(tenant, size), headers));
      expectAccepted(wire.responses[0], size, `${target.name} ${type ?? 'no type'} ${size} items`);
    }));
    for (const { tenant, size } of cases) await expectCountedEverywhere(tenant, size);
  });

  it('the real curl -d (its own headers) posts a batch that is counted', async () => {
    const curl = ['/usr/bin/curl', '/bin/curl'].find((file) => fs.existsSync(file));
    if (curl === undefined) {
      console.log('[curl] not installed here: the raw-bytes case above sends what it sends');
      return;
    }
    const tenant = fresh('curl');
    const { stdout } = await promisify(execFile)(curl, ['-s', '-d', items(tenant, 2), `${cluster.url}/items`]);
    console.log(`[curl] ${stdout}`);
    expect(JSON.parse(stdout)).toEqual({ accepted: 2 });
    await expectCountedEverywhere(tenant, 2);
  });

  it('keys match in any letter case, the exact key winning (coordinator, worker, small and large bodies)', async () => {
    for (const target of targets()) {
      for (const padding of [0, 3000]) {
        const tenant = fresh(`keys-${padding}-${target.name}`);
        const body = JSON.stringify([
          { ID: 'a', Tenant: tenant },
          { Id: 'b', TENANT: tenant, pad: 'p'.repeat(padding) },
          { id: 'c', ID: 'not-this-one', tenant, Tenant: 'nor-this-one' },
          { iD: 'a', tEnAnT: tenant },
        ]);
        expect(Buffer.byteLength(body) >= 2048).toBe(padding > 0);
        const wire = await exchange(target.port, postBytes(body, { 'content-type': 'application/json', connection: 'close' }));
        expectAccepted(wire.responses[0], 4, `${target.name} (${body.length} bytes)`);
        await expectCountedEverywhere(tenant, 3);
      }
    }
  });

  it('a refused content type (multipart, image) stores nothing', async () => {
    const tenants: string[] = [];
    for (const target of targets()) {
      for (const type of ['multipart/form-data; boundary=b', 'image/png']) {
        const tenant = fresh(`refused-type-${target.name}`);
        tenants.push(tenant);
        const wire = await exchange(target.port, postBytes(items(tenant, 2), { 'content-type': type, connection: 'close' }));
        expectJsonError(wire.responses[0], 400, 'unsupported_content_type', `${target.name} ${type}`);
      }
    }
    await expectStoredNowhere(tenants);
  });

  it('a large bad batch is refused by the worker with the same 400 (index, reason), and the coordinator logs its id', async () => {
    const tenant = fresh('large-bad');
    const batch: unknown[] = Array.from({ length: 120 }, (_, i) => ({ id: `x${i}`, tenant }));
    batch[57] = { id: 57, tenant };
    const body = JSON.stringify(batch);
    expect(Buffer.byteLength(body)).toBeGreaterThan(2048);
    const wire = await exchange(cluster.port, postBytes(body, { 'content-type': 'application/json', connection: 'close' }));
    expectJsonError(wire.responses[0], 400, 'invalid_item', 'coordinator');
    const error = JSON.parse(wire.responses[0]!.body).error;
    expect(error.index).toBe(57);
    expect(error.message).toMatch(/Item 57: `id` must be a string/);
    const coordinatorLog = path.join(cluster.dir, 'logs', 'coordinator.log');
    await cluster.waitFor(() => fs.readFileSync(coordinatorLog, 'utf8').includes(error.id), 5_000, `the id ${error.id} in coordinator.log`);
    await expectStoredNowhere([tenant]);
  });
});
