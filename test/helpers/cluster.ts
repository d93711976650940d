import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as toYaml } from 'yaml';
import { freePorts } from './ports.js';
import { allPids, hasEnvironment, isAlive, procStat } from './proc.js';
import { COORDINATOR_ENTRY } from './repo.js';
import { stopProcess, type ExitInfo } from './stop-process.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';
import { waitFor } from './wait.js';

// The tests import these from here too.
export { COORDINATOR_ENTRY, REPO_ROOT } from './repo.js';
export { isAlive } from './proc.js';
export { waitFor } from './wait.js';

/** Every process a cluster starts inherits this variable, so cleanup finds them even when orphaned. */
const MARKER = 'COUNTAPP_TEST_CLUSTER';

const DEFAULT_WORKERS = 2;
const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 100;
const STOP_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 30_000;
const OUTPUT_LIMIT = 4 * 1024 * 1024;
/** Starts that fail because another program took a port between the check and the listen are retried on other ports. */
const START_ATTEMPTS = 3;

/**
 * Timings that make a test cluster react within a second or two (the product's defaults
 * are seconds apart). `fastTimings: false` leaves the product's defaults, for measuring.
 */
const FAST_TIMINGS = { worker_persist: 1, config_check: 1, health_check: 0.5, kill_timeout: 5, lock_stale: 2 } as const;

/** One worker as the coordinator's `GET /` lists it. */
export interface WorkerStatus {
  readonly id: string;
  readonly url: string;
  readonly state: string;
  readonly pid: number | null;
  readonly restarts: number;
  readonly [key: string]: unknown;
}

/** The coordinator's `GET /` answer. */
export interface ClusterStatus {
  readonly status: string;
  readonly workers: readonly WorkerStatus[];
  readonly [key: string]: unknown;
}

/** An HTTP answer: the status, the body parsed as JSON (the raw text when it is not JSON), the headers. */
export interface HttpResult {
  readonly status: number;
  // `any`: test code reads arbitrary JSON shapes (body.error.code, body.count).
  readonly body: any;
  readonly headers: Headers;
}

export interface ClusterOptions {
  /** Number of workers, on the ports right after the coordinator's. @default 2 */
  readonly workers?: number;
  /** Config keys laid over the harness's base config (see `startCluster`). */
  readonly config?: Record<string, unknown>;
  /** Wait until `GET /` says every worker is up. With false, return right after the spawn. @default true */
  readonly wait?: boolean;
  /** How long to wait for the cluster to be up. @default 30000 */
  readonly readyTimeoutMs?: number;
  /** How often to ask `GET /` while waiting for the cluster to be up (`startMs` is this precise). @default 100 */
  readonly readyPollMs?: number;
  /** Lay the fast test timings (`worker_persist: 1`, `health_check: 0.5`, …) under `config`; false keeps the product's defaults. @default true */
  readonly fastTimings?: boolean;
  /** Leave the temp folder after cleanup, for a person to read its logs and files. @default false */
  readonly keepDir?: boolean;
  /**
   * Remove the temp folder when this process exits rather than at cleanup (the benchmark:
   * deleting many files makes creating files slower for minutes on some file systems, and
   * the next section would measure that). @default false
   */
  readonly removeDirAtExit?: boolean;
  /**
   * A command the coordinator runs under (it must exec the rest of its arguments, keeping
   * the pid), e.g. `['prlimit', '--nofile=256:256', '--']` for a low open-file limit. @default []
   */
  readonly commandPrefix?: readonly string[];
}

export interface StopOptions {
  /** Signal the coordinator's whole process group, like Ctrl-C in a terminal. @default false */
  readonly group?: boolean;
  /** How long to wait for the coordinator to exit before SIGKILLing everything. @default 20000 */
  readonly timeoutMs?: number;
}

/** A running cluster made from a temp config; see `startCluster`. */
export interface Cluster {
  /** The temp folder: config.yaml, db/, logs/, coordinator.out. */
  readonly dir: string;
  readonly configFile: string;
  /** The coordinator's port. */
  readonly port: number;
  /** The coordinator's base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The worker URLs of the config now written. */
  readonly workerUrls: string[];
  /** The coordinator's pid (a new one after `restart()`). */
  readonly pid: number;
  /** Milliseconds from the coordinator's spawn until `GET /` listed every worker up (the last start); undefined before. */
  readonly startMs: number | undefined;
  /** How the coordinator exited, once it has. */
  readonly exited: { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined;
  /** Everything the coordinator (and workers sharing its stdout) printed, stdout and stderr interleaved. */
  output(): string;
  /** `GET /` of the coordinator; throws unless it answers 200. */
  status(): Promise<ClusterStatus>;
  /** The pids of the workers `GET /` lists now. */
  workerPids(): Promise<number[]>;
  /** The log file of the worker at `url` (`<dir>/logs/worker-<port>.log`). */
  workerLogFile(url: string): string;
  /** `POST /items` to the coordinator (or `target`, a base URL). A string or bytes are sent as they are. */
  post(items: unknown, target?: string): Promise<HttpResult>;
  /** `GET /items/count?tenant=` on the coordinator (or `target`); throws unless 200 with a number. */
  count(tenant: string, target?: string): Promise<number>;
  /** Any request to the coordinator; `pathname` starts with '/'. */
  request(pathname: string, init?: RequestInit, target?: string): Promise<HttpResult>;
  /** Rewrites config.yaml as the base config with `patch` over it (an `undefined` value removes a key), by temp file + rename. */
  writeConfig(patch: Record<string, unknown>): void;
  /** Writes config.yaml with exactly `text` (to test a file that does not parse), by temp file + rename. */
  writeConfigText(text: string): void;
  /** Polls `predicate` every 50 ms until it is true; a throw counts as false. */
  waitFor(predicate: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void>;
  /** Waits until `GET /` answers 200 and lists every configured worker as up. */
  waitReady(timeoutMs?: number): Promise<void>;
  /**
   * Sends `signal` to the coordinator and waits for its exit; after `timeoutMs` SIGKILLs it
   * and every worker it ever reported. Returns the exit code (null when killed by a signal).
   */
  stop(signal?: NodeJS.Signals, options?: StopOptions): Promise<number | null>;
  /** Stops the coordinator (SIGINT) if running, then starts it again on the same folder and waits until ready. */
  restart(): Promise<void>;
  /** Stops if running, SIGKILLs any process of the cluster still alive, and removes the temp folder (unless `keepDir`). */
  cleanup(): Promise<void>;
}

const clusters = new Set<ClusterProcess>();

/**
 * Starts a real cluster from a temp config: a fresh `countapp-*` folder in the OS temp dir,
 * a block of free consecutive ports (the coordinator's, then one per worker), and a
 * config.yaml with `port`, `workers` (a list of `http://127.0.0.1:<p>`), `database: db/`,
 * `worker_logs: logs/`, the fast test timings (`worker_persist: 1`, `config_check: 1`,
 * `health_check: 0.5`, `kill_timeout: 5`, `lock_stale: 2`; see `fastTimings`), then
 * `options.config` over those. Runs `node dist/coordinator/main.js --config <file>` in its
 * own process group and waits until every worker is up. On failure everything is killed
 * and removed, and the error has the coordinator's output.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  if (!fs.existsSync(COORDINATOR_ENTRY)) {
    throw new Error(`${COORDINATOR_ENTRY} does not exist: build first (make build)`);
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      // Another program took one of the ports between the check and the listen: other ports.
      if (attempt >= START_ATTEMPTS || !/EADDRINUSE|already in use/.test(String(err))) throw err;
    }
  }
}

async function startOnce(options: ClusterOptions): Promise<Cluster> {
  const override = options.config ?? {};
  const workers = typeof override.workers === 'number' ? override.workers : options.workers ?? DEFAULT_WORKERS;
  const [coordinatorPort, ...workerPorts] = await freePorts(workers + 1, { consecutive: true });
  const dir = makeTempDir('countapp-', { keep: options.keepDir });
  const base: Record<string, unknown> = {
    port: coordinatorPort,
    workers: workerPorts.map((port) => `http://127.0.0.1:${port}`),
    database: 'db/',
    worker_logs: 'logs/',
    ...(options.fastTimings === false ? {} : FAST_TIMINGS),
    ...override,
  };
  const cluster = new ClusterProcess(dir, base, options);
  clusters.add(cluster);
  try {
    cluster.writeConfig({});
    cluster.spawn();
    if (options.wait !== false) await cluster.waitReady(options.readyTimeoutMs ?? READY_TIMEOUT_MS);
  } catch (err) {
    cluster.killEverythingSync(false);
    const output = cluster.output();
    await cluster.cleanup();
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`startCluster failed: ${message}\n--- coordinator output ---\n${tail(output, 20_000)}`, { cause: err });
  }
  return cluster;
}

/** Cleans up every cluster this process started and has not cleaned up yet; for `afterEach`/`afterAll`. */
export async function stopAllClusters(): Promise<void> {
  const results = await Promise.allSettled([...clusters].map((cluster) => cluster.cleanup()));
  const failed = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed.length > 0) throw new AggregateError(failed.map((result) => result.reason), 'stopAllClusters: some clusters failed to clean up');
}

// If the test process exits without its hooks (a crash, process.exit), leave nothing behind.
process.on('exit', () => {
  for (const cluster of clusters) cluster.killEverythingSync(true);
});

class ClusterProcess implements Cluster {
  readonly dir: string;
  readonly configFile: string;
  readonly #base: Record<string, unknown>;
  readonly #options: ClusterOptions;
  #current: Record<string, unknown>;
  readonly #outFile: string;
  readonly #token: string;
  #output = '';
  #child: ChildProcess | undefined;
  #exit: Promise<ExitInfo> | undefined;
  #exitInfo: ExitInfo | undefined;
  /** Every coordinator this cluster ran, with its start time (to tell a reused pid apart). */
  readonly #coordinators: Array<{ pid: number; start: number | undefined }> = [];
  /** Every worker pid `GET /` ever reported, with its start time. */
  readonly #workers = new Map<number, number | undefined>();
  #cleanup: Promise<void> | undefined;
  #removed = false;
  #spawnedAt = 0;
  #startMs: number | undefined;

  constructor(dir: string, base: Record<string, unknown>, options: ClusterOptions) {
    this.dir = dir;
    this.#options = options;
    this.configFile = path.join(dir, 'config.yaml');
    this.#outFile = path.join(dir, 'coordinator.out');
    this.#token = dir;
    this.#base = base;
    this.#current = base;
  }

  get port(): number {
    const port = this.#current.port;
    if (typeof port !== 'number') throw new Error(`the config's port is not a number: ${String(port)}`);
    return port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get workerUrls(): string[] {
    const workers = this.#current.workers;
    if (typeof workers === 'number') return Array.from({ length: workers }, (_, i) => `http://127.0.0.1:${this.port + 1 + i}`);
    if (Array.isArray(workers)) return workers.filter((url): url is string => typeof url === 'string');
    return [];
  }

  get pid(): number {
    const pid = this.#child?.pid;
    if (pid === undefined) throw new Error('the coordinator is not started');
    return pid;
  }

  get startMs(): number | undefined {
    return this.#startMs;
  }

  get exited(): ExitInfo | undefined {
    return this.#exitInfo;
  }

  output(): string {
    return this.#output;
  }

  /** Starts the coordinator process (not waiting for it to be ready). */
  spawn(): void {
    if (this.#child !== undefined && this.#exitInfo === undefined) throw new Error('the coordinator is already running');
    if (this.#child !== undefined) this.#append(`\n--- restart ${new Date().toISOString()} ---\n`);
    this.#exitInfo = undefined;
    this.#startMs = undefined;
    this.#spawnedAt = performance.now();
    const [command, ...args] = [...(this.#options.commandPrefix ?? []), process.execPath, COORDINATOR_ENTRY, '--config', this.configFile];
    const child = spawn(command!, args, {
      cwd: this.dir,
      env: { ...process.env, [MARKER]: this.#token },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a test can send "Ctrl-C" to the group, and it never hits vitest.
      detached: true,
    });
    this.#child = child;
    this.#exit = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exitInfo = { code, signal };
        resolve(this.#exitInfo);
      });
      child.once('error', (err) => {
        this.#append(`\n[harness] spawn error: ${err.message}\n`);
        if (child.pid === undefined) {
          this.#exitInfo = { code: null, signal: null };
          resolve(this.#exitInfo);
        }
      });
    });
    child.stdout?.on('data', (chunk: Buffer) => this.#append(chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => this.#append(chunk.toString('utf8')));
    if (child.pid !== undefined) this.#coordinators.push({ pid: child.pid, start: procStat(child.pid)?.start });
  }

  async status(): Promise<ClusterStatus> {
    const result = await this.request('/');
    if (result.body !== null && typeof result.body === 'object') this.#record(result.body as ClusterStatus);
    if (result.status !== 200) throw new Error(`GET / answered ${result.status}: ${JSON.stringify(result.body)}`);
    return result.body as ClusterStatus;
  }

  async workerPids(): Promise<number[]> {
    const { workers } = await this.status();
    return workers.map((worker) => worker.pid).filter((pid): pid is number => typeof pid === 'number');
  }

  workerLogFile(url: string): string {
    return path.join(this.dir, 'logs', `worker-${new URL(url).port}.log`);
  }

  post(items: unknown, target?: string): Promise<HttpResult> {
    const body = typeof items === 'string' || items instanceof Uint8Array ? items : JSON.stringify(items);
    return this.request('/items', { method: 'POST', headers: { 'content-type': 'application/json' }, body }, target);
  }

  async count(tenant: string, target?: string): Promise<number> {
    const result = await this.request(`/items/count?tenant=${encodeURIComponent(tenant)}`, undefined, target);
    const count: unknown = result.body?.count;
    if (result.status !== 200 || typeof count !== 'number') {
      throw new Error(`count(${JSON.stringify(tenant)}) at ${target ?? this.url} answered ${result.status}: ${JSON.stringify(result.body)}`);
    }
    return count;
  }

  async request(pathname: string, init: RequestInit = {}, target: string = this.url): Promise<HttpResult> {
    const response = await fetch(`${target.replace(/\/+$/, '')}${pathname}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...init });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: the caller gets the text (and a test can say so).
    }
    return { status: response.status, body, headers: response.headers };
  }

  writeConfig(patch: Record<string, unknown>): void {
    const merged: Record<string, unknown> = { ...this.#base };
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) delete merged[key];
      else merged[key] = value;
    }
    this.#writeAtomically(toYaml(merged));
    this.#current = merged;
  }

  writeConfigText(text: string): void {
    this.#writeAtomically(text);
  }

  waitFor(predicate: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
    return waitFor(predicate, timeoutMs, what).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n--- coordinator output (tail) ---\n${tail(this.#output, 8000)}`, { cause: err });
    });
  }

  async waitReady(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      const exit = this.#exitInfo;
      if (exit !== undefined) throw new Error(`the coordinator exited (code ${exit.code}, signal ${exit.signal}) before the cluster was up`);
      try {
        const result = await this.request('/', { signal: AbortSignal.timeout(2000) });
        const body = result.body as Partial<ClusterStatus> | string;
        if (typeof body === 'object' && body !== null) this.#record(body);
        const workers = typeof body === 'object' && body !== null && Array.isArray(body.workers) ? body.workers : undefined;
        if (result.status === 200 && workers !== undefined && workers.length >= this.workerUrls.length && workers.every((worker) => worker.state === 'up')) {
          this.#startMs ??= performance.now() - this.#spawnedAt;
          return;
        }
        last = `GET / answered ${result.status}: ${JSON.stringify(body)}`;
      } catch (err) {
        last = err instanceof Error ? `${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}` : String(err);
      }
      if (Date.now() >= deadline) throw new Error(`the cluster was not up after ${timeoutMs} ms; last: ${last}`);
      await sleep(this.#options.readyPollMs ?? READY_POLL_MS);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGINT', options: StopOptions = {}): Promise<number | null> {
    const child = this.#child;
    const exit = this.#exit;
    if (child === undefined || exit === undefined) return null;
    if (this.#exitInfo === undefined) {
      const timeoutMs = options.timeoutMs ?? STOP_TIMEOUT_MS;
      await stopProcess(child, {
        signal,
        group: options.group,
        timeoutMs,
        kill: () => {
          this.#append(`\n[harness] the coordinator did not exit within ${timeoutMs} ms of ${signal}: SIGKILL\n`);
          this.killEverythingSync(false);
        },
      });
    }
    return (await exit).code;
  }

  async restart(): Promise<void> {
    if (this.#exitInfo === undefined) await this.stop();
    this.spawn();
    await this.waitReady();
  }

  cleanup(): Promise<void> {
    this.#cleanup ??= this.#doCleanup();
    return this.#cleanup;
  }

  async #doCleanup(): Promise<void> {
    try {
      if (this.#child !== undefined && this.#exitInfo === undefined) await this.stop().catch(() => null);
      // Whatever survived the stop (an orphaned worker, a stuck one): SIGKILL, then wait until it is gone.
      const pids = this.killEverythingSync(false);
      const deadline = Date.now() + 5000;
      while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
      if (this.#exitInfo === undefined && this.#exit !== undefined) await Promise.race([this.#exit, sleep(5000)]);
      const leftover = pids.filter(isAlive);
      if (leftover.length > 0) throw new Error(`cleanup: processes ${leftover.join(', ')} of ${this.dir} survived SIGKILL`);
    } finally {
      if (this.#options.keepDir !== true && this.#options.removeDirAtExit !== true) this.#removeDir();
      clusters.delete(this);
    }
  }

  /**
   * SIGKILLs the coordinator and every process of this cluster: worker pids it reported,
   * members of its process group, and anything carrying this cluster's marker in its
   * environment. Pids are checked against their start time, so a reused pid is spared.
   * Returns the pids signalled. Synchronous, so it can run in a process 'exit' handler.
   */
  killEverythingSync(removeDir: boolean): number[] {
    const targets = new Set<number>();
    const child = this.#child;
    if (child?.pid !== undefined && this.#exitInfo === undefined) targets.add(child.pid);
    for (const pid of this.#stragglers()) targets.add(pid);
    targets.delete(process.pid);
    for (const pid of targets) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    if (removeDir && this.#options.keepDir !== true) this.#removeDir();
    return [...targets];
  }

  /** The live processes that belong to this cluster (coordinators excluded while they are our unreaped children). */
  #stragglers(): number[] {
    const found = new Set<number>();
    for (const [pid, start] of this.#workers) {
      const stat = procStat(pid);
      if (stat === undefined ? isAlive(pid) : stat.state !== 'Z' && (start === undefined || stat.start === start)) found.add(pid);
    }
    const marker = `${MARKER}=${this.#token}`;
    // A coordinator's group (and session) id is its pid. The id cannot be reused while the
    // group has members; once it is empty, a new process may get that pid and lead an
    // unrelated group, so a group counts only while its leader is gone or is still ours.
    const groups = new Set<number>();
    for (const coordinator of this.#coordinators) {
      const leader = procStat(coordinator.pid);
      if (leader === undefined || (coordinator.start !== undefined && leader.start === coordinator.start)) groups.add(coordinator.pid);
    }
    for (const pid of allPids()) {
      if (pid === process.pid || found.has(pid)) continue;
      const stat = procStat(pid);
      if (stat === undefined || stat.state === 'Z') continue;
      if (groups.has(stat.pgrp) || groups.has(stat.session) || hasEnvironment(pid, marker)) found.add(pid);
    }
    return [...found];
  }

  #record(status: Partial<ClusterStatus>): void {
    if (!Array.isArray(status.workers)) return;
    for (const worker of status.workers) {
      const pid = worker?.pid;
      if (typeof pid === 'number' && Number.isInteger(pid) && pid > 0 && !this.#workers.has(pid)) {
        this.#workers.set(pid, procStat(pid)?.start);
      }
    }
  }

  #append(text: string): void {
    this.#output += text;
    if (this.#output.length > OUTPUT_LIMIT) this.#output = this.#output.slice(-OUTPUT_LIMIT / 2);
    if (this.#removed) return;
    try {
      fs.appendFileSync(this.#outFile, text);
    } catch {
      // The folder is gone (cleaned up while a process still printed).
    }
  }

  #writeAtomically(text: string): void {
    // Like an editor that saves by rename: the watcher sees the file replaced, never half-written.
    const temp = path.join(this.dir, `.config.yaml.${process.pid}.${Date.now()}.tmp`);
    fs.writeFileSync(temp, text);
    fs.renameSync(temp, this.configFile);
  }

  #removeDir(): void {
    this.#removed = true;
    removeTempDir(this.dir);
  }
}

function tail(text: string, length: number): string {
  return text.length <= length ? text : `...${text.slice(-length)}`;
}

/** Every lock folder (proper-lockfile's `*.lock`) anywhere under `dir`, as paths relative to it. */
export function locksUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.lock'));
}

/** Waits until every worker (or each of `urls`) counts `expected` for `tenant`. */
export async function everyWorkerCounts(cluster: Cluster, tenant: string, expected: number, timeoutMs: number, urls: readonly string[] = cluster.workerUrls): Promise<void> {
  await waitFor(async () => {
    const counts = await Promise.all(urls.map((url) => cluster.count(tenant, url)));
    return counts.every((count) => count === expected);
  }, timeoutMs, `every worker to count ${expected} for ${tenant}`);
}

/** The original CountApp's sanity case: these four items make t1 count 2, t2 and t3 count 1. */
export const SANITY_BATCH = [
  { id: '1', tenant: 't1' },
  { id: '2', tenant: 't2' },
  { id: '2', tenant: 't3' },
  { id: '4', tenant: 't1' },
] as const;

/** Posts the sanity case through the coordinator and waits until every worker counts it right. */
export async function expectSanityCase(cluster: Cluster): Promise<void> {
  const res = await cluster.post(SANITY_BATCH);
  if (res.status !== 200 || res.body?.accepted !== 4) throw new Error(`the sanity batch was answered ${res.status} ${JSON.stringify(res.body)}`);
  await everyWorkerCounts(cluster, 't1', 2, 5_000);
  await everyWorkerCounts(cluster, 't2', 1, 5_000);
  await everyWorkerCounts(cluster, 't3', 1, 5_000);
}
