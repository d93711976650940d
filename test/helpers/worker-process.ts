import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { validateConfig, type Config } from '../../shared/config.js';
import { freePorts } from './ports.js';
import { REPO_ROOT } from './repo.js';
import { exitOf, stopProcess } from './stop-process.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/** The built worker (`make build` writes it). */
export const WORKER_ENTRY: string = path.join(REPO_ROOT, 'dist', 'worker', 'main.js');

/** One real worker process, started the way the coordinator starts one, with a secret the test knows. */
export interface WorkerHandle {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly id: string;
  /** The secret its control routes (`/kill`, hand-overs, flushes) need. */
  readonly secret: string;
  readonly dir: string;
  readonly config: Config;
  /** Its write-ahead log folder (`<database>/.wal/<id>`). */
  readonly walFolder: string;
  /** Resolves once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops it (SIGTERM, SIGKILL after 10 s), waits for the exit, removes its temp folder. */
  stop(): Promise<void>;
}

const started = new Set<ChildProcess>();

// If the test process exits without its hooks, leave no worker behind.
process.on('exit', () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * Forks `dist/worker/main.js` with an IPC channel, in a temp folder of its own (database
 * and logs), on a free port, hands it the `init` a coordinator would (config with the fast
 * test timings, `secret`, no other member) and resolves once it reports `ready`.
 */
export async function startWorker(options: { readonly secret?: string; readonly config?: Record<string, unknown> } = {}): Promise<WorkerHandle> {
  const [coordinatorPort, port] = await freePorts(2, { consecutive: true });
  const dir = makeTempDir('countapp-worker-');
  const url = `http://127.0.0.1:${port}`;
  const config = validateConfig({ port: coordinatorPort, workers: [url], database: 'db/', worker_logs: 'logs/', worker_persist: 1, lock_stale: 2, kill_timeout: 5, ...options.config }, dir);
  const spec = config.workers[0]!;
  fs.mkdirSync(config.worker_logs, { recursive: true });
  const out = fs.openSync(path.join(config.worker_logs, `${spec.id}.log`), 'a');
  const child = fork(WORKER_ENTRY, [], { stdio: ['ignore', out, out, 'ipc'], execArgv: [] });
  fs.closeSync(out);
  started.add(child);
  const exited = exitOf(child);
  const secret = options.secret ?? 'test-secret';
  const stop = async (): Promise<void> => {
    await stopProcess(child, { signal: 'SIGTERM', timeoutMs: 10_000 });
    started.delete(child);
    removeTempDir(dir);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.on('message', (message: { type?: string; message?: string }) => {
        if (message.type === 'ready') resolve();
        if (message.type === 'fatal') reject(new Error(`the worker could not start: ${message.message}`));
      });
      exited.then(({ code, signal }) => reject(new Error(`the worker exited before it was ready (code ${code}, signal ${signal})`)), () => {});
      child.send({ type: 'init', workerId: spec.id, secret, config, members: [] });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, port: spec.port, pid: child.pid!, id: spec.id, secret, dir, config, walFolder: path.join(config.database, '.wal', spec.id), exited, stop };
}
