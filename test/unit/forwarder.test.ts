import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { FORWARDED_BY_HEADER } from '../../coordinator/forwarded-by.js';
import { AVOID_AFTER_FAILURE_MS, ERROR_BODY_LIMIT, Forwarder, LOOP_AVOID_MS, MIN_ATTEMPT_MS } from '../../coordinator/forwarder.js';
import { validateConfig, type Config, type WorkerSpec } from '../../shared/config.js';
import { AppError } from '../../shared/errors.js';
import { freePorts } from '../helpers/ports.js';
import { CaptureLog } from '../helpers/capture-log.js';

/** A fake worker: a real HTTP server on a free port whose answers the test writes. */
interface FakeWorker {
  readonly url: string;
  readonly requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }>;
  handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;
  close(): Promise<void>;
}

const started: FakeWorker[] = [];
const forwarders: Forwarder[] = [];

afterEach(async () => {
  await Promise.all(forwarders.splice(0).map((forwarder) => forwarder.close()));
  await Promise.all(started.splice(0).map((worker) => worker.close()));
});

async function fakeWorker(handler: FakeWorker['handler'] = (_req, res) => res.end('{"accepted":1}')): Promise<FakeWorker> {
  const [port] = await freePorts(1);
  const server = http.createServer();
  const worker: FakeWorker = {
    url: `http://127.0.0.1:${port}`,
    requests: [],
    handler,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      worker.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      worker.handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  started.push(worker);
  return worker;
}

function configFor(urls: readonly string[], overrides: Record<string, unknown> = {}): Config {
  return validateConfig({ port: 1, workers: [...urls], forward_timeout: 1, forward_deadline: 2, ...overrides }, '/tmp');
}

function forwarderFor(config: Config, log = new CaptureLog(), suspects: string[] = []): Forwarder {
  const forwarder = new Forwarder({ log, config, liveWorkers: () => config.workers, markSuspect: (url) => suspects.push(url), instanceId: 'test-instance' });
  forwarders.push(forwarder);
  return forwarder;
}

const POST = (body = '[{"id":"a","tenant":"t"}]') => ({ method: 'POST' as const, path: '/items', body });

function spec(config: Config, url: string): WorkerSpec {
  return config.workers.find((worker) => worker.url === url)!;
}

describe('Forwarder', () => {
  it('sends a POST with the JSON type and this coordinator in the forwarded-by header, and returns the answer whole', async () => {
    const worker = await fakeWorker((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"accepted":1}');
    });
    const config = configFor([worker.url]);
    const answer = await forwarderFor(config).forward(POST());
    expect(answer).toEqual({ status: 200, body: Buffer.from('{"accepted":1}'), worker: spec(config, worker.url).id });
    expect(worker.requests).toHaveLength(1);
    expect(worker.requests[0]!.headers['content-type']).toBe('application/json');
    expect(worker.requests[0]!.headers[FORWARDED_BY_HEADER]).toBe('test-instance');
    expect(worker.requests[0]!.body).toBe('[{"id":"a","tenant":"t"}]');
  });

  it('passes a 4xx through as it is (not retried)', async () => {
    const worker = await fakeWorker((_req, res) => {
      res.writeHead(400);
      res.end('{"error":{"code":"invalid_item","message":"m","id":"x","index":0}}');
    });
    const answer = await forwarderFor(configFor([worker.url])).forward(POST());
    expect(answer.status).toBe(400);
    expect(worker.requests).toHaveLength(1);
  });

  it('retries a refused connection on another worker within the deadline, and reports the refusing one as suspect', async () => {
    const [closedPort] = await freePorts(1);
    const dead = `http://127.0.0.1:${closedPort}`;
    const alive = await fakeWorker();
    const config = configFor([dead, alive.url]);
    const suspects: string[] = [];
    const forwarder = forwarderFor(config, new CaptureLog(), suspects);
    for (let i = 0; i < 10; i++) expect((await forwarder.forward(POST())).status).toBe(200);
    expect(alive.requests).toHaveLength(10);
    expect(suspects.every((url) => url === dead)).toBe(true);
    expect(suspects.length).toBeGreaterThan(0);
  });

  it(`passes over a worker that just failed for AVOID_AFTER_FAILURE_MS (${AVOID_AFTER_FAILURE_MS} ms) while another can take the request`, async () => {
    let failNext = true;
    const flaky = await fakeWorker((_req, res) => {
      res.writeHead(failNext ? 500 : 200);
      res.end(failNext ? '{"error":{"code":"internal","message":"m","id":"x"}}' : '{"accepted":1}');
      failNext = false;
    });
    const steady = await fakeWorker();
    const config = configFor([flaky.url, steady.url]);
    const forwarder = forwarderFor(config);
    // Until the flaky one has failed once.
    while (flaky.requests.length === 0) await forwarder.forward(POST());
    const before = flaky.requests.length;
    for (let i = 0; i < 20; i++) await forwarder.forward(POST());
    expect(flaky.requests.length, 'picked while it should be avoided').toBe(before);
    await new Promise((resolve) => setTimeout(resolve, AVOID_AFTER_FAILURE_MS + 100));
    for (let i = 0; i < 40; i++) await forwarder.forward(POST());
    expect(flaky.requests.length, 'never picked again once the avoidance ended').toBeGreaterThan(before);
  });

  it('no worker reachable (connections refused): 503 no_worker_available once the deadline has passed — nothing can have been stored', async () => {
    const [closedPort] = await freePorts(1);
    const forwarder = forwarderFor(configFor([`http://127.0.0.1:${closedPort}`], { forward_timeout: 0.2, forward_deadline: 0.6 }));
    const started = Date.now();
    const err = await forwarder.forward(POST()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('no_worker_available');
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });

  it('a worker that took the POST but never answered: 504 outcome_unknown at the deadline', async () => {
    const silent = await fakeWorker(() => {
      // Never answers.
    });
    const forwarder = forwarderFor(configFor([silent.url], { forward_timeout: 0.3, forward_deadline: 0.8 }));
    const started = Date.now();
    const err = await forwarder.forward(POST()).catch((e: unknown) => e);
    const took = Date.now() - started;
    expect((err as AppError).code).toBe('outcome_unknown');
    expect((err as AppError).status).toBe(504);
    expect(silent.requests.length).toBeGreaterThanOrEqual(1);
    expect(took).toBeGreaterThanOrEqual(750);
    expect(took).toBeLessThan(800 * 3 + 1000);
  });

  it('a count (GET) that no worker answered is no_worker_available, not outcome_unknown (a read applies nothing)', async () => {
    const silent = await fakeWorker(() => {});
    const forwarder = forwarderFor(configFor([silent.url], { forward_timeout: 0.2, forward_deadline: 0.4 }));
    const err = await forwarder.forward({ method: 'GET', path: '/items/count?tenant=t' }).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('no_worker_available');
  });

  it('no_worker_available says what is true of each request: a count (GET) was not answered, a batch (POST) was not stored', async () => {
    const [closedPort] = await freePorts(1);
    const config = configFor([`http://127.0.0.1:${closedPort}`], { forward_timeout: 0.2, forward_deadline: 0.3 });
    const read = (await forwarderFor(config).forward({ method: 'GET', path: '/items/count?tenant=t' }).catch((e: unknown) => e)) as AppError;
    expect(read.code).toBe('no_worker_available');
    expect(read.status).toBe(503);
    expect(read.message).toBe('No worker could answer the count; try again shortly.');
    const write = (await forwarderFor(config).forward(POST()).catch((e: unknown) => e)) as AppError;
    expect(write.code).toBe('no_worker_available');
    expect(write.message).toBe('No worker could take the request; nothing was stored. Try again shortly.');
    // With a reason first (no worker in the config): the same news after it.
    const none = configFor([], { forward_timeout: 0.2, forward_deadline: 0.3 });
    expect(((await forwarderFor(none).forward({ method: 'GET', path: '/counts?tenant=t' }).catch((e: unknown) => e)) as AppError).message)
      .toBe('The config lists no workers. No worker could answer the count; try again shortly.');
    expect(((await forwarderFor(none).forward(POST()).catch((e: unknown) => e)) as AppError).message).toBe('The config lists no workers. Nothing was stored.');
  });

  it('a 500 from the only worker may have applied the batch: outcome_unknown; a 503 applied nothing: no_worker_available', async () => {
    const failing = await fakeWorker((_req, res) => {
      res.writeHead(500);
      res.end('{"error":{"code":"internal","message":"m","id":"x"}}');
    });
    // An attempt that times out may have been taken (outcome_unknown too): a timeout no loaded machine reaches keeps this about the 503.
    const config = configFor([failing.url], { forward_timeout: 1.5, forward_deadline: 1.5 });
    expect(((await forwarderFor(config).forward(POST()).catch((e: unknown) => e)) as AppError).code).toBe('outcome_unknown');
    failing.handler = (_req, res) => {
      res.writeHead(503);
      res.end('{"error":{"code":"shutting_down","message":"m","id":"x"}}');
    };
    expect(((await forwarderFor(config).forward(POST()).catch((e: unknown) => e)) as AppError).code).toBe('no_worker_available');
  });

  it(`starts no attempt in the last MIN_ATTEMPT_MS (${MIN_ATTEMPT_MS} ms) before the deadline: 503s until then are no_worker_available, never outcome_unknown`, async () => {
    // The backoff's last sleep is cut to end at the deadline; an attempt sent in the
    // millisecond left could only time out, and a batch it carried might be stored after
    // the client was told the outcome is unknown. 12 requests in a row, all answered 503.
    const refusing = await fakeWorker((_req, res) => {
      res.writeHead(503);
      res.end('{"error":{"code":"shutting_down","message":"m","id":"x"}}');
    });
    const forwarder = forwarderFor(configFor([refusing.url], { forward_timeout: 0.2, forward_deadline: 0.2 }));
    const codes = [];
    for (let i = 0; i < 12; i++) codes.push(((await forwarder.forward(POST()).catch((e: unknown) => e)) as AppError).code);
    expect(codes).toEqual(Array(12).fill('no_worker_available'));
  });

  it('every live worker answers storage_unavailable: that answer at once, as complete JSON, whatever its length', async () => {
    const long = JSON.stringify({ error: { code: 'storage_unavailable', message: `The worker could not write the batch to its log (${'x'.repeat(2_000)}): nothing was stored.`, id: 'abc' } });
    expect(long.length).toBeGreaterThan(300);
    expect(long.length).toBeLessThan(ERROR_BODY_LIMIT);
    const workers = await Promise.all([1, 2].map(() => fakeWorker((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(long);
    })));
    const forwarder = forwarderFor(configFor(workers.map((worker) => worker.url), { forward_timeout: 5, forward_deadline: 15 }));
    const started = Date.now();
    const answer = await forwarder.forward(POST());
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(answer.status).toBe(503);
    expect(answer.body.toString()).toBe(long);
    expect(workers.map((worker) => worker.requests.length)).toEqual([1, 1]);
  });

  it(`an error answer longer than ERROR_BODY_LIMIT (${ERROR_BODY_LIMIT} B) is never passed on cut: it counts as a plain failure`, async () => {
    const huge = JSON.stringify({ error: { code: 'storage_unavailable', message: 'x'.repeat(ERROR_BODY_LIMIT), id: 'abc' } });
    // The first attempt gets the huge answer, the next one a 200: had the huge answer been
    // passed on (cut), the client would have had it. (Answering it every time until the
    // deadline made the outcome depend on whether the deadline fell inside an attempt,
    // outcome_unknown, or between two, no_worker_available: a loaded run saw both.)
    let answered = 0;
    const worker = await fakeWorker((_req, res) => {
      if (answered++ === 0) res.writeHead(503).end(huge);
      else res.writeHead(200).end('{"accepted":1}');
    });
    const answer = await forwarderFor(configFor([worker.url], { forward_timeout: 5, forward_deadline: 15 })).forward(POST());
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe('{"accepted":1}');
    expect(worker.requests.length).toBe(2);
  });

  it(`a URL that answers forwarding_loop: its answer at once, one ERROR line naming it per LOOP_AVOID_MS (${LOOP_AVOID_MS} ms)`, async () => {
    const coordinatorLike = await fakeWorker((_req, res) => {
      res.writeHead(508, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"forwarding_loop","message":"m","id":"loop1"}}');
    });
    const log = new CaptureLog();
    const forwarder = forwarderFor(configFor([coordinatorLike.url], { forward_timeout: 5, forward_deadline: 15 }), log);
    const started = Date.now();
    for (let i = 0; i < 3; i++) {
      const answer = await forwarder.forward(POST());
      expect(answer.status).toBe(508);
    }
    expect(Date.now() - started).toBeLessThan(5_000);
    const errors = log.lines.filter((line) => line.startsWith('ERROR'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(coordinatorLike.url);
    expect(errors[0]).toContain('forwarding loop');
  });

  it('a looping URL gets no requests while a real worker can take them', async () => {
    const loop = await fakeWorker((_req, res) => {
      res.writeHead(508);
      res.end('{"error":{"code":"forwarding_loop","message":"m","id":"l"}}');
    });
    const real = await fakeWorker();
    const forwarder = forwarderFor(configFor([loop.url, real.url]));
    while (loop.requests.length === 0) expect((await forwarder.forward(POST())).status).toBe(200);
    for (let i = 0; i < 30; i++) expect((await forwarder.forward(POST())).status).toBe(200);
    expect(loop.requests).toHaveLength(1);
  });
});
