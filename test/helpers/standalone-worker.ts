import { spawn, type ChildProcess } from 'node:child_process';
import { COORDINATOR_ENTRY } from './repo.js';
import { stopProcess, type ExitInfo } from './stop-process.js';
import { waitFor } from './wait.js';

/** A worker run by hand (`countapp worker --config PATH --port N`), as an operator would on another host. */
export interface StandaloneWorker {
  readonly port: number;
  /** `http://<host>:<port>`, where it listens. */
  readonly url: string;
  readonly pid: number | undefined;
  /** Everything it printed (its log lines and errors). */
  output(): string;
  /** How it exited, once it has. */
  readonly exited: Promise<ExitInfo>;
  /** Sends `signal` (SIGTERM by default: it persists and exits) and waits; SIGKILL after 20 s. */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<ExitInfo>;
}

export interface StandaloneOptions {
  readonly configFile: string;
  readonly port: number;
  /** `--host`. */
  readonly host?: string;
  /** Where it can be reached, for the readiness check. @default http://127.0.0.1:<port> */
  readonly url?: string;
  /** A command to run it under, which execs the rest keeping the pid (`ip netns exec NAME`). @default [] */
  readonly prefix?: readonly string[];
  /** Wait until it logged that it is ready. @default true */
  readonly wait?: boolean;
  /** Extra environment (`secret_env`). */
  readonly env?: Record<string, string>;
}

const workers = new Set<ChildProcess>();

/** Starts `countapp worker` and (by default) waits until it says it is ready. */
export async function startStandaloneWorker(options: StandaloneOptions): Promise<StandaloneWorker> {
  const args = [process.execPath, COORDINATOR_ENTRY, 'worker', '--config', options.configFile, '--port', String(options.port), ...(options.host === undefined ? [] : ['--host', options.host])];
  const [command, ...rest] = [...(options.prefix ?? []), ...args];
  const child = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  workers.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString('utf8'); });
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString('utf8'); });
  const exited = new Promise<ExitInfo>((resolve) => child.once('exit', (code, signal) => {
    workers.delete(child);
    resolve({ code, signal });
  }));
  const worker: StandaloneWorker = {
    port: options.port,
    url: options.url ?? `http://127.0.0.1:${options.port}`,
    get pid() {
      return child.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    output: () => output,
    exited,
    stop: (signal = 'SIGTERM') => stopProcess(child, { signal, timeoutMs: 20_000 }),
    kill: () => stopProcess(child, { signal: 'SIGKILL' }),
  };
  if (options.wait !== false) {
    try {
      await waitFor(() => {
        if (child.exitCode !== null) throw new Error(`it exited with code ${child.exitCode}`);
        return / ready at /.test(output);
      }, 20_000, `the worker on port ${options.port} to be ready`);
    } catch (err) {
      await worker.kill();
      throw new Error(`${(err as Error).message}\n--- its output ---\n${output}`, { cause: err });
    }
  }
  return worker;
}

/** SIGKILLs every worker started here that still runs, and waits for them; for `afterEach`. */
export async function stopAllStandaloneWorkers(): Promise<void> {
  await Promise.allSettled([...workers].map((child) => stopProcess(child, { signal: 'SIGKILL' })));
}

process.on('exit', () => {
  for (const child of workers) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Gone already.
    }
  }
});
