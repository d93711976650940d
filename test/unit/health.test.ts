import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CHECK_TIMEOUT_MS, HealthMonitor, HUNG_CHECKS, HUNG_MS, SUSPECT_CHECK_MS } from '../../coordinator/health.js';
import { ownResourceErrorCode } from '../../coordinator/resource-errors.js';
import { checkHealth, type HealthAnswer, type HealthCheck } from '../../coordinator/worker-client.js';
import { CaptureLog } from '../helpers/capture-log.js';

const OK: HealthAnswer = { kind: 'ok', body: { status: 'ok', worker: 'w1' } };
const REFUSED: HealthAnswer = { kind: 'failed', reason: 'ECONNREFUSED', timedOut: false };
const TIMEOUT: HealthAnswer = { kind: 'failed', reason: 'ECONNABORTED', timedOut: true };
const EMFILE: HealthAnswer = { kind: 'inconclusive', reason: 'EMFILE', code: 'EMFILE' };

/** A scripted worker: answers every check with `answer`, or holds it until the test settles it. */
class FakeUpstream {
  answer: HealthAnswer | 'hold' = OK;
  readonly calls: Array<{ readonly startedAt: number; readonly signal: AbortSignal; settle?: (answer: HealthAnswer) => void }> = [];

  readonly check: HealthCheck = (_url, { signal }) => {
    const call: { startedAt: number; signal: AbortSignal; settle?: (answer: HealthAnswer) => void } = { startedAt: Date.now(), signal };
    this.calls.push(call);
    if (this.answer !== 'hold') return Promise.resolve(this.answer);
    return new Promise((resolve) => {
      call.settle = resolve;
      // Like the real check: an abort ends it.
      signal.addEventListener('abort', () => resolve({ kind: 'failed', reason: 'ERR_CANCELED', timedOut: false }));
    });
  };
}

interface Setup {
  readonly monitor: HealthMonitor;
  readonly upstream: FakeUpstream;
  readonly log: CaptureLog;
  readonly hung: string[];
  readonly changes: boolean[];
}

function setup(options: { intervalMs?: number; trusted?: boolean; killable?: boolean } = {}): Setup {
  const upstream = new FakeUpstream();
  const log = new CaptureLog();
  const hung: string[] = [];
  const changes: boolean[] = [];
  const monitor: HealthMonitor = new HealthMonitor({
    id: 'w1',
    url: 'http://127.0.0.1:1',
    log,
    intervalMs: () => options.intervalMs ?? 1000,
    trusted: options.trusted ?? true,
    onChange: () => changes.push(monitor.serving),
    ...(options.killable === false ? {} : { onHung: (detail: string) => hung.push(detail) }),
    check: upstream.check,
  });
  monitors.push(monitor);
  return { monitor, upstream, log, hung, changes };
}

const monitors: HealthMonitor[] = [];

describe('HealthMonitor (fake timers, a scripted upstream)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(async () => {
    for (const monitor of monitors.splice(0)) await monitor.close();
    vi.useRealTimers();
  });

  it('pins the tuning constants: re-check a suspect in 0.1 s; hung = 5 failures over at least 5 s; 2 s check timeout', () => {
    expect(SUSPECT_CHECK_MS).toBe(100);
    expect(HUNG_CHECKS).toBe(5);
    expect(HUNG_MS).toBe(5000);
    expect(CHECK_TIMEOUT_MS).toBe(2000);
  });

  it('checks every interval, one at a time, with a timeout of min(2 s, 2 intervals)', async () => {
    const upstream = new FakeUpstream();
    const timeouts: number[] = [];
    const monitor = new HealthMonitor({
      id: 'w1',
      url: 'http://127.0.0.1:1',
      log: new CaptureLog(),
      intervalMs: () => 300,
      trusted: true,
      onChange: () => {},
      check: (url, options) => {
        timeouts.push(options.timeoutMs);
        return upstream.check(url, options);
      },
    });
    monitors.push(monitor);
    const t0 = Date.now();
    monitor.start();
    await vi.advanceTimersByTimeAsync(299);
    expect(upstream.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(601);
    expect(upstream.calls.map((call) => call.startedAt - t0)).toEqual([300, 600, 900]);
    expect(timeouts).toEqual([600, 600, 600]);

    // A check that hangs holds the next one back: checks never overlap.
    upstream.answer = 'hold';
    await vi.advanceTimersByTimeAsync(3300);
    expect(upstream.calls).toHaveLength(4);
    upstream.calls[3]!.settle!(OK);
    await vi.advanceTimersByTimeAsync(300);
    expect(upstream.calls).toHaveLength(5);
  });

  it('a refused connection takes a ready worker out at once; a passing check brings it back', async () => {
    const { monitor, upstream, log, changes } = setup();
    monitor.start();
    expect(monitor.serving).toBe(true);
    upstream.answer = REFUSED;
    await vi.advanceTimersByTimeAsync(1000);
    expect(monitor.serving).toBe(false);
    expect(changes).toEqual([false]);
    expect(log.matching(/w1 failed its health check \(ECONNREFUSED\)/)).toHaveLength(1);

    upstream.answer = OK;
    await vi.advanceTimersByTimeAsync(1000);
    expect(monitor.serving).toBe(true);
    expect(changes).toEqual([false, true]);
    expect(monitor.last?.answer).toEqual({ status: 'ok', worker: 'w1' });
    expect(monitor.last?.at).toBe(Date.now());
  });

  it('forgives one slow answer, not two in a row', async () => {
    const { monitor, upstream } = setup();
    monitor.start();
    upstream.answer = TIMEOUT;
    await vi.advanceTimersByTimeAsync(1000);
    expect(monitor.serving).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(monitor.serving).toBe(false);
  });

  it('markSuspect: out at once, re-checked within SUSPECT_CHECK_MS, and a check already in flight cannot clear it', async () => {
    const { monitor, upstream, log } = setup();
    monitor.start();
    upstream.answer = 'hold';
    await vi.advanceTimersByTimeAsync(1000);
    expect(upstream.calls).toHaveLength(1); // in flight, started at t=1000

    await vi.advanceTimersByTimeAsync(50);
    monitor.markSuspect();
    monitor.markSuspect(); // a burst of failing requests: one log line, one re-check
    expect(monitor.serving).toBe(false);
    expect(log.matching(/w1 is suspect/)).toHaveLength(1);

    // The check that started before the report passes: the worker stays out.
    upstream.answer = OK;
    upstream.calls[0]!.settle!(OK);
    await vi.advanceTimersByTimeAsync(0);
    expect(monitor.serving).toBe(false);

    // The re-check comes SUSPECT_CHECK_MS later (not a whole interval), started after the report: it clears it.
    await vi.advanceTimersByTimeAsync(SUSPECT_CHECK_MS - 1);
    expect(upstream.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(upstream.calls).toHaveLength(2);
    expect(monitor.serving).toBe(true);
  });

  it('a burst of reports does not push the re-check back', async () => {
    const { monitor, upstream } = setup({ intervalMs: 10_000 });
    monitor.start();
    const t0 = Date.now();
    monitor.markSuspect();
    for (let i = 0; i < 9; i++) {
      await vi.advanceTimersByTimeAsync(10);
      monitor.markSuspect();
    }
    await vi.advanceTimersByTimeAsync(SUSPECT_CHECK_MS - 90);
    expect(upstream.calls.map((call) => call.startedAt - t0)).toEqual([SUSPECT_CHECK_MS]);
    expect(monitor.serving).toBe(true);
  });

  it.each([
    [1000, 6000],
    [500, 5500],
    [2000, 12_000],
  ])('with health_check %i ms, a worker failing every check is reported hung at %i ms, once', async (intervalMs, hungAt) => {
    const start = Date.now();
    const { monitor, upstream, hung } = setup({ intervalMs });
    upstream.answer = TIMEOUT;
    monitor.start();
    await vi.advanceTimersByTimeAsync(hungAt - 1);
    expect(hung).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(Date.now() - start).toBe(hungAt);
    expect(hung).toHaveLength(1);
    expect(hung[0]).toMatch(/w1 has failed its health checks for [\d.]+ s \(\d+ in a row, last: ECONNABORTED\): it looks hung/);
    await vi.advanceTimersByTimeAsync(10 * intervalMs);
    expect(hung).toHaveLength(1);
  });

  it("never blames a worker for the coordinator's own EMFILE: no suspect, no hung, one log line", async () => {
    const { monitor, upstream, hung, changes, log } = setup();
    upstream.answer = EMFILE;
    monitor.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(upstream.calls.length).toBeGreaterThanOrEqual(59);
    expect(monitor.serving).toBe(true);
    expect(hung).toEqual([]);
    expect(changes).toEqual([]);
    expect(log.matching(/cannot health-check w1: the coordinator is out of file descriptors \(EMFILE\).*not counting it against the worker/)).toHaveLength(1);
  });

  it('a check the coordinator could not make breaks a failing run: a kill needs HUNG_CHECKS real failures in a row', async () => {
    const { monitor, upstream, hung } = setup();
    monitor.start();
    // 4 failures, 1 inconclusive, 4 failures, 1 inconclusive...: over 30 s, never 5 in a row.
    for (let i = 0; i < 30; i++) {
      upstream.answer = i % 5 === 4 ? EMFILE : TIMEOUT;
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(monitor.serving).toBe(false);
    expect(hung).toEqual([]);
    upstream.answer = TIMEOUT;
    await vi.advanceTimersByTimeAsync(6000);
    expect(hung).toHaveLength(1);
  });

  it('a remote worker (not trusted) serves only once a check passed; no hung report without onHung', async () => {
    const { monitor, upstream, hung, log } = setup({ trusted: false, killable: false });
    expect(monitor.serving).toBe(false);
    expect(monitor.checked).toBe(false);
    upstream.answer = REFUSED;
    monitor.start(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(monitor.checked).toBe(true);
    expect(monitor.serving).toBe(false);
    expect(log.matching(/w1 failed its first health check/)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(hung).toEqual([]);
    upstream.answer = OK;
    await vi.advanceTimersByTimeAsync(1000);
    expect(monitor.serving).toBe(true);
  });

  it('close() aborts the check in flight and stops checking', async () => {
    const { monitor, upstream, changes } = setup();
    upstream.answer = 'hold';
    monitor.start();
    await vi.advanceTimersByTimeAsync(1000);
    expect(upstream.calls).toHaveLength(1);
    const closed = monitor.close();
    expect(upstream.calls[0]!.signal.aborted).toBe(true);
    upstream.calls[0]!.settle!(REFUSED);
    await closed;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(upstream.calls).toHaveLength(1);
    expect(changes).toEqual([]);
    monitor.markSuspect();
    expect(monitor.serving).toBe(true);
  });
});

describe('checkHealth (a real HTTP request to a fake worker)', () => {
  const servers: http.Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  async function fakeWorker(handler: http.RequestListener): Promise<string> {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const options = () => ({ timeoutMs: 500, signal: new AbortController().signal });

  it('a 200 passes, with the JSON body parsed', async () => {
    const url = await fakeWorker((_req, res) => res.end('{"status":"ok","pending":3}'));
    expect(await checkHealth(url, options())).toEqual({ kind: 'ok', body: { status: 'ok', pending: 3 } });
  });

  it('every check opens a connection of its own (one kept open from before would not meet a worker that stopped accepting)', async () => {
    let connections = 0;
    const url = await fakeWorker((_req, res) => res.end('{}'));
    servers[0]!.on('connection', () => {
      connections += 1;
    });
    for (let i = 0; i < 3; i++) expect(await checkHealth(url, options())).toMatchObject({ kind: 'ok' });
    expect(connections).toBe(3);
  });

  it('any other status fails', async () => {
    const url = await fakeWorker((_req, res) => {
      res.statusCode = 503;
      res.end('{"error":{}}');
    });
    expect(await checkHealth(url, options())).toEqual({ kind: 'failed', reason: 'HTTP 503', timedOut: false });
  });

  it('a refused connection fails, and is not a timeout', async () => {
    const url = await fakeWorker(() => {});
    await new Promise((resolve) => servers.pop()!.close(resolve));
    expect(await checkHealth(url, options())).toEqual({ kind: 'failed', reason: expect.stringContaining('ECONNREFUSED'), timedOut: false });
  });

  it('no answer within the timeout fails as a timeout', async () => {
    const url = await fakeWorker(() => {}); // never answers
    const answer = await checkHealth(url, { timeoutMs: 100, signal: new AbortController().signal });
    expect(answer).toMatchObject({ kind: 'failed', timedOut: true });
  });

  it("the coordinator's own resource errors are recognised through wrappers; the worker's are not", () => {
    const emfile = Object.assign(new Error('connect EMFILE 127.0.0.1:5001'), { code: 'EMFILE' });
    expect(ownResourceErrorCode(emfile)).toBe('EMFILE');
    expect(ownResourceErrorCode(new Error('wrapped', { cause: emfile }))).toBe('EMFILE');
    expect(ownResourceErrorCode(Object.assign(new Error('spawn ENFILE'), { code: 'ENFILE' }))).toBe('ENFILE');
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EADDRINUSE', undefined]) {
      expect(ownResourceErrorCode(Object.assign(new Error('x'), { code }))).toBeUndefined();
    }
  });
});
