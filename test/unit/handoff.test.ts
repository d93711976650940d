import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { HANDOFF_CHUNK_BYTES, HANDOFF_PATH, HandoffClient } from '../../worker/store/handoff.js';
import { COMPACT_ID_MAP_TYPE, decodeIdMapCompact } from '../../worker/store/id-map.js';

/** A stand-in owner: a real HTTP server on a free loopback port, answering as `answer` says. */
async function owner(answer: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void): Promise<{ url: string; requests: { path: string; secret: string | undefined; type: string | undefined; body: string }[]; server: http.Server }> {
  const requests: { path: string; secret: string | undefined; type: string | undefined; body: string }[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString('utf8');
      requests.push({ path: req.url ?? '', secret: req.headers[SECRET_HEADER] as string | undefined, type: req.headers['content-type'], body });
      answer(req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

const servers: http.Server[] = [];
const clients: HandoffClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

function client(): HandoffClient {
  const made = new HandoffClient(() => 'the-secret');
  clients.push(made);
  return made;
}

describe('HandoffClient', () => {
  it('posts the ids with the cluster secret, in chunks of at most HANDOFF_CHUNK_BYTES, and returns the tenants the owner could not make visible', async () => {
    const { url, requests } = await owner((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ failed: ['t1', 42] }));
    });
    const big = new Map([['t1', Array.from({ length: 150_000 }, (_, i) => `id-${i}`)], ['t2', ['x', 'y']]]);
    const answer = await client().send(url, big, { visible: true, timeoutMs: 10_000 });
    expect(requests.length).toBeGreaterThan(1);
    for (const request of requests) {
      expect(request.path).toBe(`${HANDOFF_PATH}?wait=visible`);
      expect(request.secret).toBe('the-secret');
      expect(request.type).toBe(COMPACT_ID_MAP_TYPE);
      expect(Buffer.byteLength(request.body)).toBeLessThanOrEqual(HANDOFF_CHUNK_BYTES);
    }
    const sent = new Map<string, string[]>();
    for (const request of requests) {
      for (const [tenant, ids] of decodeIdMapCompact(request.body)) sent.set(tenant, [...(sent.get(tenant) ?? []), ...ids]);
    }
    expect(new Map([...sent].map(([tenant, ids]) => [tenant, ids.sort()]))).toEqual(new Map([...big].map(([tenant, ids]) => [tenant, [...ids].sort()])));
    // One entry per chunk; a non-string is not a tenant.
    expect(new Set(answer.failed)).toEqual(new Set(['t1']));
  });

  it('reuses its connections across hand-overs to the same owner', async () => {
    const sockets = new Set<unknown>();
    const { url, server } = await owner((_req, _body, res) => res.writeHead(200).end('{"failed":[]}'));
    server.on('connection', (socket) => sockets.add(socket));
    const handoff = client();
    for (let i = 0; i < 5; i++) await handoff.send(url, new Map([[`t${i}`, ['a']]]), { visible: false, timeoutMs: 10_000 });
    expect(sockets.size).toBe(1);
  });

  it.each([
    ['an error status', (res: http.ServerResponse) => res.writeHead(503).end('{"error":"shutting_down"}'), /refused the hand-over: HTTP 503 \{"error":"shutting_down"\}/],
    ['an answer that is not JSON', (res: http.ServerResponse) => res.writeHead(200).end('<html>'), /answered a hand-over with "<html>", not JSON/],
    ['an answer cut off', (res: http.ServerResponse) => {
      res.writeHead(200, { 'content-length': '100' }).write('{"failed":');
      setTimeout(() => res.destroy(), 20);
    }, /closed the connection before its answer to a hand-over was complete|aborted|socket hang up/],
  ])('rejects on %s', async (_what, answer, message) => {
    const { url } = await owner((_req, _body, res) => answer(res));
    await expect(client().send(url, new Map([['t', ['a']]]), { visible: false, timeoutMs: 10_000 })).rejects.toThrow(message);
  });

  it('gives up after its timeout when the owner does not answer', async () => {
    const { url } = await owner(() => {});
    const started = performance.now();
    await expect(client().send(url, new Map([['t', ['a']]]), { visible: false, timeoutMs: 300 })).rejects.toThrow(/aborted|timeout/i);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('rejects when nothing listens', async () => {
    const { url, server } = await owner(() => {});
    await new Promise((resolve) => server.close(resolve));
    servers.splice(servers.indexOf(server), 1);
    await expect(client().send(url, new Map([['t', ['a']]]), { visible: false, timeoutMs: 5_000 })).rejects.toThrow(/ECONNREFUSED/);
  });
});
