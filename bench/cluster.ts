import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { childrenOf, isAlive, onInterrupt, removeDir, trackDir, trackPid, untrackPid } from './cleanup.js';
import { getJson } from './http.js';
import { freePortBlock } from './ports.js';
import { sleep } from './stats.js';

/** dist/bench → dist/coordinator/main.js */
export const COORDINATOR_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'coordinator', 'main.js');

export interface ClusterOptions {
  readonly workers: number;
  /** Keys laid over the base config (port, workers, database, worker_logs, config_check: 1). */
  readonly config?: Record<string, unknown>;
  readonly readyTimeoutMs?: number;
}

export interface WorkerStatus {
  readonly id: string;
  readonly url: string;
  readonly state: string;
  readonly pid?: number;
  readonly restarts: number;
}

export interface Cluster {
  readonly dir: string;
  readonly port: number;
  /** http://127.0.0.1:<port> of the coordinator. */
  readonly url: string;
  readonly workerUrls: readonly string[];
  readonly workerPorts: readonly number[];
  readonly pid: number;
  /** Spawn → every worker 'up' in GET /, ms. */
  readonly startMs: number;
  workers(): Promise<WorkerStatus[]>;
  /** The worker's log file (`<worker_logs>/worker-<port>.log`). */
  workerLog(port: number): string;
  /** Rewrites config.yaml (base + the start options + `patch`) by temp file and rename. */
  writeConfig(patch: Record<string, unknown>): void;
  /** SIGTERM to the coordinator (it stops its workers gracefully), SIGKILL stragglers, remove the folder. */
  stop(): Promise<void>;
}

const keep = process.env.BENCH_KEEP === '1';

/** Starts `node dist/coordinator/main.js --config <temp>/config.yaml` and waits until every worker is up. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      lastError = err;
      // Another program took one of the ports between the check and the listen: try other ports.
      if (!/in use|EADDRINUSE/.test(String(err))) break;
    }
  }
  throw lastError;
}

async function startOnce(options: ClusterOptions): Promise<Cluster> {
  const [port, ...workerPorts] = await freePortBlock(options.workers + 1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-bench-'));
  trackDir(dir);
  const configFile = path.join(dir, 'config.yaml');
  const base: Record<string, unknown> = {
    port,
    workers: workerPorts.map((p) => `http://127.0.0.1:${p}`),
    database: 'db/',
    worker_logs: 'logs/',
    config_check: 1,
    ...options.config,
  };
  const writeConfig = (patch: Record<string, unknown>): void => {
    const tmp = `${configFile}.tmp`;
    fs.writeFileSync(tmp, toYaml({ ...base, ...patch }));
    fs.renameSync(tmp, configFile);
  };
  writeConfig({});

  const outFile = path.join(dir, 'coordinator.out');
  const out = fs.openSync(outFile, 'a');
  const started = performance.now();
  let child: ChildProcess;
  try {
    // Its own process group: a Ctrl-C at the terminal reaches the harness, which stops the cluster itself.
    child = spawn(process.execPath, [COORDINATOR_ENTRY, '--config', configFile], { stdio: ['ignore', out, out], detached: true });
  } finally {
    fs.closeSync(out);
  }
  const pid = child.pid;
  if (pid === undefined) {
    removeDir(dir);
    throw new Error('could not spawn the coordinator');
  }
  trackPid(pid);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));

  const url = `http://127.0.0.1:${port}`;
  const workerPids = new Set<number>();
  const workers = async (): Promise<WorkerStatus[]> => {
    const answer = await getJson(`${url}/`);
    if (answer.status !== 200 || !Array.isArray(answer.body?.workers)) throw new Error(`GET / answered ${answer.status}`);
    const list = answer.body.workers as WorkerStatus[];
    for (const worker of list) {
      if (typeof worker.pid === 'number' && !workerPids.has(worker.pid)) {
        workerPids.add(worker.pid);
        trackPid(worker.pid);
      }
    }
    return list;
  };

  let stopping: Promise<void> | undefined;
  let unhook = (): void => {};
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const p of childrenOf(pid)) if (!workerPids.has(p)) {
        workerPids.add(p);
        trackPid(p);
      }
      if (!exited) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // Gone.
        }
        const timeout = sleep(60_000).then(() => 'timeout');
        if ((await Promise.race([exit.then(() => 'exited'), timeout])) === 'timeout') {
          process.stderr.write(`bench: the coordinator ${pid} did not stop within 60 s of SIGTERM: SIGKILL\n`);
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Gone.
          }
          await exit;
        }
      }
      untrackPid(pid);
      // The workers exit on their own once the coordinator is gone; give them a moment, then make sure.
      const deadline = Date.now() + 10_000;
      for (const p of workerPids) {
        while (isAlive(p) && Date.now() < deadline) await sleep(20);
        if (isAlive(p)) {
          process.stderr.write(`bench: worker ${p} still running after its coordinator stopped: SIGKILL\n`);
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // Gone.
          }
        }
        untrackPid(p);
      }
      unhook();
      if (!keep) removeDir(dir);
    })();
    return stopping;
  };
  unhook = onInterrupt(stop);

  const readyTimeout = options.readyTimeoutMs ?? 30_000;
  let startMs: number | undefined;
  let last = '';
  while (startMs === undefined) {
    if (exited) break;
    try {
      const list = await workers();
      if (list.length === options.workers && list.every((w) => w.state === 'up')) {
        startMs = performance.now() - started;
        break;
      }
      last = JSON.stringify(list.map((w) => w.state));
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (performance.now() - started > readyTimeout) break;
    await sleep(5);
  }
  if (startMs === undefined) {
    const output = fs.existsSync(outFile) ? fs.readFileSync(outFile, 'utf8') : '';
    await stop();
    const why = exited ? 'the coordinator exited' : `not ready within ${readyTimeout} ms (last: ${last})`;
    throw new Error(`cluster did not start: ${why}\n--- coordinator output ---\n${output.slice(-4000)}`);
  }

  return {
    dir,
    port,
    url,
    workerUrls: workerPorts.map((p) => `http://127.0.0.1:${p}`),
    workerPorts,
    pid,
    startMs,
    workers,
    workerLog: (p) => path.join(dir, 'logs', `worker-${p}.log`),
    writeConfig,
    stop,
  };
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}
