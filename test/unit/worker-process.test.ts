import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { checkHealth } from '../../coordinator/worker-client.js';
import { WorkerProcess, WorkerStartError } from '../../coordinator/worker-process.js';
import { validateConfig, type Config } from '../../shared/config.js';
import { CaptureLog } from '../helpers/capture-log.js';
import { isAlive } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';

/** A stand-in worker (see the file): same IPC and control endpoints, behaviour set by FAKE_WORKER_MODE. */
const FAKE_WORKER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'fake-worker.mjs');
/** Slow-machine factor for the few upper bounds below. */
const SLOW = 10;

const dirs: string[] = [];
const processes: WorkerProcess[] = [];

afterEach(async () => {
  delete process.env.FAKE_WORKER_MODE;
  for (const child of processes.splice(0)) {
    child.signal('SIGKILL');
    await child.exited;
  }
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface Fixture {
  readonly child: WorkerProcess;
  readonly config: Config;
  readonly log: CaptureLog;
  readonly logFile: string;
  /** The fixture's own lines (its stdout, i.e. its log file). */
  lines(): string[];
}

async function fakeWorker(mode: string): Promise<Fixture> {
  const [port] = await freePorts(1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-process-'));
  dirs.push(dir);
  const config = validateConfig({ port: 9, workers: [`http://127.0.0.1:${port}`] }, dir);
  const log = new CaptureLog();
  const logFile = path.join(config.worker_logs, `${config.workers[0]!.id}.log`);
  process.env.FAKE_WORKER_MODE = mode;
  const child = new WorkerProcess({ spec: config.workers[0]!, entry: FAKE_WORKER, execArgv: [], logFile, secret: 's3cret', log });
  processes.push(child);
  const lines = (): string[] => {
    try {
      return fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  return { child, config, log, logFile, lines };
}

/** The time (Date.now() in the fixture) of its first line containing `what`. */
function when(lines: string[], what: string): number | undefined {
  const line = lines.find((l) => l.includes(what));
  return line === undefined ? undefined : Number(line.split(' ')[0]);
}

describe('WorkerProcess (a real child: test/fixtures/fake-worker.mjs)', () => {
  it('forks with its log file as stdout, sends init over IPC, is ready, and stops by /kill', async () => {
    const { child, config, lines } = await fakeWorker('normal');
    expect(child.pid).toBeUndefined();
    await child.start(() => ({ config, members: [{ id: 'worker-x', url: 'http://127.0.0.1:1' }] }));
    const pid = child.pid!;
    expect(isAlive(pid)).toBe(true);
    await child.ready;
    expect(child.readyAt).toBeLessThanOrEqual(Date.now());
    expect(lines().join('\n')).toMatch(new RegExp(`init ${config.workers[0]!.id} members 1\\n.*listening`));
    expect(await checkHealth(config.workers[0]!.url, { timeoutMs: 2000, signal: new AbortController().signal })).toMatchObject({ kind: 'ok', body: { pid } });

    child.send({ type: 'config', config: { ...config, health_check: 7 } });
    expect(await child.stop(5000)).toBe('persisted');
    expect(child.exit).toEqual({ code: 0, signal: null, fatal: undefined });
    expect(child.pid).toBeUndefined();
    expect(isAlive(pid)).toBe(false);
    expect(lines().join('\n')).toMatch(/message config health_check 7\n.*got \/kill/);
  });

  it('opens the log file owner-only (it holds ids): creates it 0600 in a 0700 folder, narrows an older 0644 one', async () => {
    const first = await fakeWorker('crash');
    await first.child.start(() => ({ config: first.config, members: [] }));
    await first.child.exited;
    expect(fs.statSync(first.config.worker_logs).mode & 0o777).toBe(0o700);
    expect(fs.statSync(first.logFile).mode & 0o777).toBe(0o600);

    const second = await fakeWorker('crash');
    fs.mkdirSync(path.dirname(second.logFile), { recursive: true });
    fs.writeFileSync(second.logFile, 'an older line\n', { mode: 0o644 });
    fs.chmodSync(second.logFile, 0o644);
    await second.child.start(() => ({ config: second.config, members: [] }));
    await second.child.exited;
    expect(fs.statSync(second.logFile).mode & 0o777).toBe(0o600);
    expect(second.lines()[0]).toBe('an older line');
  });

  it('stop escalation: /kill ignored → SIGTERM at half the timeout → SIGKILL at the timeout, then waits for the exit', async () => {
    const { child, config, log, lines } = await fakeWorker('stubborn');
    await child.start(() => ({ config, members: [] }));
    await child.ready;
    const t0 = Date.now();
    const outcome = await child.stop(1500);
    const elapsed = Date.now() - t0;
    expect(outcome).toBe('killed');
    expect(child.exit).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(elapsed).toBeLessThan(1500 * SLOW);
    const seen = lines();
    const kill = when(seen, 'got /kill');
    const term = when(seen, 'got SIGTERM');
    expect(kill).toBeDefined();
    expect(term).toBeDefined();
    expect(kill!).toBeLessThan(term!);
    expect(term! - t0).toBeGreaterThanOrEqual(750 - 5); // 5 ms: the fixture's clock read vs ours
    expect(term! - t0).toBeLessThan(1500);
    expect(log.text()).toMatch(/is still running 0.75 s after it was asked to stop: sending SIGTERM\n.*did not stop within 1.5 s: killed \(SIGKILL\)/);
  });

  it('a worker not serving yet is stopped with SIGTERM, not /kill', async () => {
    const { child, config, lines, log } = await fakeWorker('normal');
    await child.start(() => ({ config, members: [] }));
    const outcome = await child.stop(5000);
    expect(outcome).toBe('terminated');
    expect(child.exit).toBeDefined();
    expect(lines().join('\n')).not.toMatch(/got \/kill/);
    expect(log.text()).toMatch(/is not serving yet: sending SIGTERM/);
    await expect(child.ready).rejects.toBeInstanceOf(WorkerStartError);
  });

  it("a worker that reports 'fatal' rejects ready with its message, and exited carries it", async () => {
    const { child, config, log } = await fakeWorker('fatal');
    await child.start(() => ({ config, members: [] }));
    await expect(child.ready).rejects.toThrow(/exited \(code 1\) before it was ready: port \d+ is already in use by another program/);
    expect(await child.exited).toEqual({ code: 1, signal: null, fatal: expect.stringMatching(/already in use/) });
    expect(log.text()).toMatch(/could not start: port \d+ is already in use/);
    // Stopping what has exited only reports it.
    expect(await child.stop(1000)).toBe('exited');
  });

  it('a process is started once: a respawn is a new WorkerProcess', async () => {
    const { child, config } = await fakeWorker('crash');
    await child.start(() => ({ config, members: [] }));
    expect(await child.exited).toMatchObject({ code: 3 });
    await expect(child.start(() => ({ config, members: [] }))).rejects.toThrow(/started once/);
  });

  it('stopping a process that was never started settles at once', async () => {
    const { child } = await fakeWorker('normal');
    expect(await child.stop(1000)).toBe('exited');
    await expect(child.ready).rejects.toThrow(/stopped before it was started/);
    expect(await child.exited).toEqual({ code: null, signal: null, fatal: undefined });
  });

  it('stop() twice is one stop', async () => {
    const { child, config } = await fakeWorker('slow');
    await child.start(() => ({ config, members: [] }));
    await child.ready;
    const first = child.stop(5000);
    expect(child.stop(5000)).toBe(first);
    expect(await first).toBe('persisted');
  });
});
