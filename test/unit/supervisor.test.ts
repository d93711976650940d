import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { Supervisor, type WorkerStatus } from '../../coordinator/supervisor.js';
import { validateConfig, type Config, type WorkerSpec } from '../../shared/config.js';
import { CaptureLog } from '../helpers/capture-log.js';
import { isAlive, waitFor } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';

/** A stand-in worker (see the file): same IPC and control endpoints, behaviour set by FAKE_WORKER_MODE at fork time. */
const FAKE_WORKER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'fake-worker.mjs');

const dirs: string[] = [];
const supervisors: Supervisor[] = [];
const pids = new Set<number>();

afterEach(async () => {
  for (const supervisor of supervisors.splice(0)) await supervisor.close();
  delete process.env.FAKE_WORKER_MODE;
  delete process.env.FAKE_WORKER_STOP_MS;
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  // close() waits for every process; this proves it rather than trusting it.
  expect([...pids].filter(isAlive)).toEqual([]);
  pids.clear();
});

interface Harness {
  readonly supervisor: Supervisor;
  readonly log: CaptureLog;
  /** Every live set onLiveChange was called with, as worker ids. */
  readonly liveChanges: string[][];
  readonly dir: string;
  config(ports: readonly number[], extra?: Record<string, unknown>): Config;
  row(port: number): WorkerStatus | undefined;
  rows(port: number): WorkerStatus[];
  workerLog(port: number): string;
  waitFor(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
}

function harness(): Harness {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-supervisor-'));
  dirs.push(dir);
  const log = new CaptureLog();
  const liveChanges: string[][] = [];
  const supervisor = new Supervisor({
    log,
    workerEntry: FAKE_WORKER,
    workerExecArgv: [],
    onLiveChange: (live: readonly WorkerSpec[]) => liveChanges.push(live.map((spec) => spec.id)),
  });
  supervisors.push(supervisor);
  const remember = (): WorkerStatus[] => {
    const rows = supervisor.status();
    for (const row of rows) if (row.pid !== null) pids.add(row.pid);
    return rows;
  };
  return {
    supervisor,
    log,
    liveChanges,
    dir,
    config: (ports, extra = {}) => validateConfig({ port: 9, workers: ports.map((port) => `http://127.0.0.1:${port}`), health_check: 0.2, kill_timeout: 5, ...extra }, dir),
    row: (port) => remember().find((row) => row.id === `worker-${port}`),
    rows: (port) => remember().filter((row) => row.id === `worker-${port}`),
    workerLog: (port) => {
      try {
        return fs.readFileSync(path.join(dir, 'logs', `worker-${port}.log`), 'utf8');
      } catch {
        return '';
      }
    },
    waitFor: (what, predicate, timeoutMs = 15_000) => waitFor(predicate, timeoutMs, what).catch((err: Error) => {
      throw new Error(`${err.message}\n${log.text()}`);
    }),
  };
}

describe('Supervisor (real children: test/fixtures/fake-worker.mjs)', () => {
  it('reconciles: adds a worker, removes it, and re-adds it while its old process is still stopping', async () => {
    process.env.FAKE_WORKER_MODE = 'slow';
    process.env.FAKE_WORKER_STOP_MS = '1500';
    const h = harness();
    const [a, b] = await freePorts(2);
    const one = h.config([a!]);
    const two = h.config([a!, b!]);

    await h.supervisor.start(one);
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([a]);
    await h.supervisor.apply(two);
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([a, b]);
    const oldPid = h.row(b!)!.pid!;
    expect(h.row(b!)).toMatchObject({ state: 'up', local: true, restarts: 0, lastExit: null });

    // Remove b: it leaves the live set at once and is listed as stopping while it persists.
    const removing = h.supervisor.apply(one);
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([a]);
    expect(h.rows(b!)).toMatchObject([{ state: 'stopping', pid: oldPid }]);

    // Re-add b before the old process is gone: the new one waits for the port.
    const readding = h.supervisor.apply(two);
    expect(h.rows(b!).map((row) => [row.state, row.pid])).toEqual([['starting', null], ['stopping', oldPid]]);
    await Promise.all([removing, readding]);

    const row = h.row(b!)!;
    expect(row.state).toBe('up');
    expect(row.pid).not.toBe(oldPid);
    expect(isAlive(oldPid)).toBe(false);
    expect(h.rows(b!)).toHaveLength(1);
    // The old process exited (1.5 s after /kill) before the new one was even forked.
    const lines = h.workerLog(b!).split('\n');
    const killedAt = Number(lines.find((line) => line.includes('got /kill'))!.split(' ')[0]);
    const inits = lines.filter((line) => line.includes(' init ')).map((line) => Number(line.split(' ')[0]));
    expect(inits).toHaveLength(2);
    expect(inits[1]! - killedAt).toBeGreaterThanOrEqual(1500 - 5);
    expect(h.log.text()).toMatch(new RegExp(`worker-${b} stopped \\(persisted\\)[^]*spawned worker-${b}`));
    expect(h.liveChanges).toEqual([[`worker-${a}`], [`worker-${a}`, `worker-${b}`], [`worker-${a}`], [`worker-${a}`, `worker-${b}`]]);
  });

  it('hands a new config to the running workers', async () => {
    const h = harness();
    const [a] = await freePorts(1);
    await h.supervisor.start(h.config([a!]));
    await h.supervisor.apply(h.config([a!], { health_check: 0.3 }));
    await h.waitFor('the config message', () => /message config health_check 0.3/.test(h.workerLog(a!)), 5000);
  });

  it('respawns a worker that keeps dying with growing delays, and lists why it died and when it comes back', async () => {
    process.env.FAKE_WORKER_MODE = 'crash';
    const h = harness();
    const [a] = await freePorts(1);
    await h.supervisor.start(h.config([a!])); // resolves once the first start failed
    const row = h.row(a!)!;
    expect(row).toMatchObject({ state: 'backing-off', pid: null, lastExit: { code: 3, signal: null, reason: 'code 3' } });
    expect(Date.parse(row.nextRespawnAt!)).toBeGreaterThan(Date.now() - 50);
    expect(h.supervisor.liveWorkers()).toEqual([]);

    await h.waitFor('three respawns', () => h.log.matching(new RegExp(`respawning worker-${a} in`)).length >= 3);
    expect(h.log.matching(new RegExp(`respawning worker-${a} in`)).slice(0, 3).map((line) => line.match(/in ([\d.]+ s)/)![1])).toEqual(['0.25 s', '0.50 s', '1.0 s']);
    expect(h.log.matching(new RegExp(`worker-${a} exited unexpectedly \\(code 3\\)`)).length).toBeGreaterThanOrEqual(3);

    // It gets well: the next respawn comes up, and the row says how it went.
    process.env.FAKE_WORKER_MODE = 'normal';
    await h.waitFor('the worker up', () => h.row(a!)?.state === 'up');
    await h.waitFor('a health answer', () => h.row(a!)?.health !== null);
    const up = h.row(a!)!;
    expect(up.restarts).toBeGreaterThanOrEqual(3);
    expect(up.lastExit).toMatchObject({ code: 3 });
    expect(up.nextRespawnAt).toBeNull();
    expect(up.uptime).toBeGreaterThanOrEqual(0);
    expect(up.health!.answer).toMatchObject({ status: 'ok', pid: up.pid });
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([a]);
  });

  it('respawns a SIGKILLed worker after 0.25 s; the live set follows', async () => {
    const h = harness();
    const [a, b] = await freePorts(2);
    await h.supervisor.start(h.config([a!, b!]));
    const pid = h.row(a!)!.pid!;
    process.kill(pid, 'SIGKILL');
    await h.waitFor('the exit seen', () => h.row(a!)?.state === 'backing-off');
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([b]);
    expect(h.row(a!)!.lastExit).toMatchObject({ code: null, signal: 'SIGKILL', reason: 'signal SIGKILL' });
    await h.waitFor('the respawn', () => h.row(a!)?.state === 'up');
    expect(h.row(a!)).toMatchObject({ restarts: 1 });
    expect(h.row(a!)!.pid).not.toBe(pid);
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([a, b]);
    expect(h.log.text()).toMatch(new RegExp(`respawning worker-${a} in 0.25 s \\(failure 1 in a row\\)`));
  });

  it('markSuspect takes a worker out of the live set until a health check passes', async () => {
    const h = harness();
    const [a, b] = await freePorts(2);
    await h.supervisor.start(h.config([a!, b!]));
    const live = h.supervisor.liveWorkers();
    expect(h.supervisor.liveWorkers()).toBe(live); // the same array while nothing changes: O(1) per request
    h.supervisor.markSuspect(`http://127.0.0.1:${a}/`);
    h.supervisor.markSuspect('http://127.0.0.1:1'); // unknown: ignored
    expect(h.supervisor.liveWorkers().map((spec) => spec.port)).toEqual([b]);
    expect(h.row(a!)!.state).toBe('suspect');
    await h.waitFor('the worker back', () => h.supervisor.liveWorkers().length === 2, 5000);
    expect(h.row(a!)!.state).toBe('up');
  });

  it('close() stops every worker, empties the live set, and leaves no process', async () => {
    const h = harness();
    const [a, b] = await freePorts(2);
    await h.supervisor.start(h.config([a!, b!]));
    const running = [h.row(a!)!.pid!, h.row(b!)!.pid!];
    await h.supervisor.close();
    expect(running.filter(isAlive)).toEqual([]);
    expect(h.supervisor.liveWorkers()).toEqual([]);
    expect(h.liveChanges.at(-1)).toEqual([]);
    expect(h.supervisor.status().map((row) => row.state)).toEqual(['stopped', 'stopped']);
    expect(h.log.matching(/stopped \(persisted\)/)).toHaveLength(2);
  });
});
