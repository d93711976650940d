import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePorts } from './ports.js';
import { stopProcess } from './stop-process.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

/** How long a redis-server gets to answer PING, and a Cluster to report `cluster_state:ok`. */
const READY_TIMEOUT_MS = 15_000;

/** The path of a program on PATH, or undefined. */
function which(program: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' });
  const text = found.stdout.trim();
  return found.status === 0 && text !== '' ? text : undefined;
}

/**
 * Why the Redis tests cannot run here, or undefined when they can: Debian's
 * `redis-server` and `redis-cli` must be on PATH (`.ci/run` installs them; by hand:
 * `apt-get install redis-server`).
 */
export function redisUnavailable(): string | undefined {
  const missing = ['redis-server', 'redis-cli'].filter((program) => which(program) === undefined);
  return missing.length === 0 ? undefined : `${missing.join(' and ')} not found on PATH (install Debian's redis-server: apt-get install redis-server)`;
}

export interface RedisOptions {
  /** `appendonly`. @default 'yes' */
  readonly appendonly?: 'yes' | 'no';
  /** `appendfsync`. @default 'everysec' */
  readonly appendfsync?: 'always' | 'everysec' | 'no';
  /** The address to listen on. @default '127.0.0.1' */
  readonly bind?: string;
  /** Run it with this command before (e.g. `['ip', 'netns', 'exec', NAME]`; it must exec, keeping the pid). @default [] */
  readonly prefix?: readonly string[];
  /** Port (and cluster bus port): found free on 127.0.0.1 when not given. */
  readonly port?: number;
  readonly busPort?: number;
  /** Be a Redis Cluster node. @default false */
  readonly clusterNode?: boolean;
}

/** A redis-server the test started: its own temp folder (AOF), its port, stopped by pid. */
export interface RedisServer {
  readonly port: number;
  readonly host: string;
  /** `redis://host:port`. */
  readonly url: string;
  readonly dir: string;
  readonly pid: number | undefined;
  /** `redis-cli -h host -p port ARGS...`, its output trimmed. */
  cli(...args: string[]): Promise<string>;
  /** SIGTERM (Redis writes and fsyncs its AOF, then exits) and waits for the exit. */
  stop(): Promise<void>;
  /** SIGKILL: nothing flushed. */
  kill(): Promise<void>;
  /** Starts it again on the same folder and port, and waits until it answers. */
  start(): Promise<void>;
  /** Stops it (if running) and removes its folder. */
  cleanup(): Promise<void>;
}

const servers = new Set<RedisServerProcess>();

class RedisServerProcess implements RedisServer {
  readonly port: number;
  readonly busPort: number | undefined;
  readonly host: string;
  readonly dir: string;
  readonly #options: RedisOptions;
  #child: ChildProcess | undefined;
  #output = '';

  constructor(port: number, busPort: number | undefined, options: RedisOptions) {
    this.port = port;
    this.busPort = busPort;
    this.host = options.bind ?? '127.0.0.1';
    this.#options = options;
    this.dir = makeTempDir('countapp-redis-');
  }

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#child?.exitCode === null && this.#child.signalCode === null ? this.#child.pid : undefined;
  }

  cli(...args: string[]): Promise<string> {
    return run('redis-cli', ['-h', this.host, '-p', String(this.port), ...args], { timeout: 10_000 }).then(({ stdout }) => stdout.trim());
  }

  async start(): Promise<void> {
    if (this.pid !== undefined) throw new Error(`redis-server on ${this.port} is already running`);
    const args = [
      '--port', String(this.port), '--bind', this.host, '--dir', this.dir, '--save', '', '--protected-mode', 'no',
      '--appendonly', this.#options.appendonly ?? 'yes', '--appendfsync', this.#options.appendfsync ?? 'everysec',
      '--daemonize', 'no', '--logfile', '',
      ...(this.#options.clusterNode === true
        ? ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(this.dir, 'nodes.conf'), '--cluster-node-timeout', '2000', '--cluster-port', String(this.busPort)]
        : []),
    ];
    const [command, ...rest] = [...(this.#options.prefix ?? []), 'redis-server', ...args];
    const child = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    child.stdout?.on('data', (chunk: Buffer) => { this.#output = (this.#output + chunk.toString('utf8')).slice(-20_000); });
    child.stderr?.on('data', (chunk: Buffer) => { this.#output = (this.#output + chunk.toString('utf8')).slice(-20_000); });
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
        return /Ready to accept connections/.test(this.#output);
      }, READY_TIMEOUT_MS, `redis-server on port ${this.port} to accept connections`);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- redis-server output ---\n${this.#output}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    if (this.#child !== undefined) await stopProcess(this.#child, { signal: 'SIGTERM', timeoutMs: 10_000 });
  }

  async kill(): Promise<void> {
    if (this.#child !== undefined) await stopProcess(this.#child, { signal: 'SIGKILL', timeoutMs: 5000 });
  }

  async cleanup(): Promise<void> {
    try {
      await this.kill();
    } finally {
      removeTempDir(this.dir);
      servers.delete(this);
    }
  }

  killSync(): void {
    const pid = this.pid;
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

/** Starts a redis-server on a free port (AOF on, `appendfsync everysec` unless told otherwise) in a temp folder. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const [port, busPort] = options.port === undefined ? await freePorts(options.clusterNode === true ? 2 : 1) : [options.port, options.busPort];
  const server = new RedisServerProcess(port!, busPort, options);
  servers.add(server);
  try {
    await server.start();
  } catch (err) {
    await server.cleanup();
    throw err;
  }
  return server;
}

/** A Redis Cluster of `masters` nodes (no replicas), made with `redis-cli --cluster create`. */
export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  /** The nodes' `redis://` URLs: a `store` list. */
  readonly urls: string[];
  /** Keys held by each node (DBSIZE), in node order. */
  keysPerNode(): Promise<number[]>;
  /** Waits until every node says `cluster_state:ok` (after a node restarted, say). */
  waitHealthy(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startRedisCluster(masters = 3, options: RedisOptions = {}): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const cleanup = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((node) => node.cleanup()));
  };
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedis({ ...options, clusterNode: true }));
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `${node.host}:${node.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    const waitHealthy = (): Promise<void> => waitFor(async () => {
      const states = await Promise.all(nodes.map((node) => node.cli('cluster', 'info')));
      return states.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info));
    }, READY_TIMEOUT_MS, 'every Redis Cluster node to report cluster_state:ok');
    await waitHealthy();
    return {
      nodes,
      urls: nodes.map((node) => node.url),
      keysPerNode: () => Promise.all(nodes.map(async (node) => Number(await node.cli('dbsize')))),
      waitHealthy,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Stops every redis-server this process started and removes their folders; for `afterEach`/`afterAll`. */
export async function stopAllRedis(): Promise<void> {
  await Promise.allSettled([...servers].map((server) => server.cleanup()));
}

// Nothing outlives the test process, whatever happens to its hooks.
process.on('exit', () => {
  for (const server of servers) server.killSync();
});

/** SCARD of `key` asked with redis-cli (`-c`: follows a Cluster's redirections). */
export async function redisCount(server: RedisServer, key: string): Promise<number> {
  return Number(await server.cli('-c', 'scard', key));
}
