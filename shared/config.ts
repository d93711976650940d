import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { LOG_LEVELS, type LogLevel } from './log-level.js';
import { defaultMaxConnections } from './open-file-limit.js';
import { mappedIPv4, reachesListener } from './own-address.js';

/** How a worker acknowledges a batch; see the README's durability table. */
export type Durability = 'fsync' | 'write' | 'off';

/** One worker of the cluster, as the config names it. */
export interface WorkerSpec {
  /** The URL the coordinator forwards to, normalised (`http://127.0.0.1:5001`). */
  readonly url: string;
  /** Host to connect to. */
  readonly host: string;
  readonly port: number;
  /**
   * True when the coordinator spawns it: a loopback host, unless the entry says
   * `spawn: false` (a worker run by hand with `countapp worker`, checked and forwarded to only).
   */
  readonly local: boolean;
  /** Stable name: log file, write-ahead log and lock owner (`worker-5001`). */
  readonly id: string;
}

/**
 * Where the counts live: `files` (per-tenant files in `database`) or Redis, one node
 * (`redis://host:port`) or a Redis Cluster (a list of node URLs, any of them enough to
 * find the others).
 */
export type StoreSpec =
  | { readonly kind: 'files' }
  | { readonly kind: 'redis'; readonly urls: readonly string[]; readonly cluster: boolean };

/** The validated config with every default filled in and every path absolute. */
export interface Config {
  /** Coordinator's port. @default 5000 */
  readonly port: number;
  /** Coordinator's listen address. @default '127.0.0.1' */
  readonly host: string;
  /** The workers; a number N in the file means ports port+1 .. port+N. @default 4 */
  readonly workers: readonly WorkerSpec[];
  /** Folder of the per-tenant files and the write-ahead logs. @default 'db/' */
  readonly database: string;
  /** Folder of the log files. @default 'logs/' */
  readonly worker_logs: string;
  /** Seconds between a worker's persists. @default 5 */
  readonly worker_persist: number;
  /**
   * Seconds between a worker's moves of its acknowledged ids into the store between
   * persists (every worker counts them from then on); 0, or a `worker_persist` at most
   * twice as long: only at persists. @default 0.5
   */
  readonly worker_publish: number;
  /** Seconds between re-reads of the config file. @default 5 */
  readonly config_check: number;
  /** Address local workers listen on; null means the loopback address of their URL. @default null */
  readonly worker_host: string | null;
  /** When a worker answers 200: after fsync, after write, or at once. @default 'fsync' */
  readonly durability: Durability;
  /** Seconds one forwarding attempt may take. @default 5 */
  readonly forward_timeout: number;
  /** Seconds a request may spend across all its attempts before the client gets 503. @default 15 */
  readonly forward_deadline: number;
  /** Seconds between health checks of each worker. @default 1 */
  readonly health_check: number;
  /** Seconds a removed worker gets to persist and exit before SIGKILL. @default 10 */
  readonly kill_timeout: number;
  /** Seconds after which a lock whose holder stopped refreshing it is taken over. @default 5 */
  readonly lock_stale: number;
  /** Largest request body, bytes. @default 4194304 */
  readonly max_body_bytes: number;
  /** Most items in one batch. @default 10000 */
  readonly max_batch_items: number;
  /** Longest id, characters. @default 256 */
  readonly max_id_length: number;
  /** Longest tenant, characters. @default 256 */
  readonly max_tenant_length: number;
  /** Merge concurrent small batches into one upstream request. @default true */
  readonly coalesce: boolean;
  /** Most client connections the coordinator holds at once. @default half the open-file limit (`ulimit -n`) */
  readonly max_connections: number;
  /** The store of record. @default files */
  readonly store: StoreSpec;
  /** File holding the cluster secret (for workers run by hand); absolute. @default null (a random secret per start) */
  readonly secret_file: string | null;
  /** Environment variable holding the cluster secret. @default null */
  readonly secret_env: string | null;
  /** Most tenants one `GET /counts` may name. @default 1000 */
  readonly max_count_tenants: number;
  /** Tenants whose last answered count the coordinator remembers, so no answer is ever lower (least recently asked forgotten first). @default 100000 */
  readonly count_floor_tenants: number;
  /** Least severe log lines written (coordinator and workers). @default 'info' */
  readonly log_level: LogLevel;
}

/** A config that does not parse or validate; `key` names the culprit when there is one. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly key: string | undefined;

  constructor(message: string, key?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.key = key;
  }
}

export const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** Every config key; the README documents each (a test checks). */
export const CONFIG_KEYS: ReadonlySet<string> = new Set([
  'port', 'host', 'workers', 'database', 'worker_logs', 'worker_persist', 'worker_publish', 'config_check',
  'worker_host', 'durability', 'forward_timeout', 'forward_deadline', 'health_check',
  'kill_timeout', 'lock_stale', 'max_body_bytes', 'max_batch_items', 'max_id_length',
  'max_tenant_length', 'coalesce', 'max_connections', 'store', 'secret_file', 'secret_env',
  'max_count_tenants', 'count_floor_tenants', 'log_level',
]);

function show(value: unknown): string {
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  let text: string;
  try {
    text = typeof value === 'string' ? `'${value}'` : JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  if (text.length > 60) text = `${text.slice(0, 57)}...`;
  return `\`${text}\` (${type})`;
}

function expected(key: string, what: string, value: unknown): ConfigError {
  return new ConfigError(`Expected \`${key}\` to be ${what}, got ${show(value)}`, key);
}

type Raw = Record<string, unknown>;

function numberKey(raw: Raw, key: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER, integer = false): number {
  const value = raw[key];
  if (value === undefined || value === null) return fallback;
  const what = `${integer ? 'an integer' : 'a number'} ${min === 0 ? '> 0' : `>= ${min}`}${max < Number.MAX_SAFE_INTEGER ? ` and <= ${max}` : ''}`;
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) throw expected(key, what, value);
  if ((min === 0 ? value <= 0 : value < min) || value > max) throw expected(key, what, value);
  return value;
}

/**
 * Whether workers publish between rounds: `worker_publish` is not 0 and `worker_persist`
 * is more than twice as long (otherwise rounds come about as often anyway). Any unit, the
 * same for both.
 */
export function publishesBetweenRounds(persist: number, publish: number): boolean {
  return publish > 0 && persist > 2 * publish;
}

/** `worker_publish`: a number of seconds like the others, or 0 (only at persists). */
function publishKey(raw: Raw): number {
  if (raw.worker_publish === 0) return 0;
  try {
    return numberKey(raw, 'worker_publish', 0.5, 0, 86400);
  } catch {
    throw expected('worker_publish', 'a number >= 0 and <= 86400 (0: only at persists)', raw.worker_publish);
  }
}

function stringKey(raw: Raw, key: string, fallback: string): string {
  const value = raw[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'string' || value.trim() === '') throw expected(key, 'a non-empty string', value);
  return value;
}

/** A `workers` entry: a URL, or `{url: URL, spawn: false}` for a worker on this machine that is run by hand. */
function workerFromEntry(entry: unknown, index: number): WorkerSpec {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return workerFromUrl(entry, index);
  const key = `workers[${index}]`;
  const { url, spawn, ...rest } = entry as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new ConfigError(`\`${key}\` has an unknown key \`${extra[0]}\` (an entry is a URL, or {url, spawn})`, key);
  if (spawn !== undefined && typeof spawn !== 'boolean') throw expected(`${key}.spawn`, 'true or false', spawn);
  const spec = workerFromUrl(url, index);
  // Only loopback workers are ever spawned; `spawn: false` says "run by hand" for them too.
  return spawn === false ? { ...spec, local: false } : spec;
}

function workerFromUrl(text: unknown, index: number): WorkerSpec {
  const key = `workers[${index}]`;
  if (typeof text !== 'string') throw expected(key, 'a URL like http://localhost:5001 (or {url, spawn: false})', text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw expected(key, 'a URL like http://localhost:5001', text);
  }
  if (url.protocol !== 'http:') throw expected(key, 'an http:// URL', text);
  if (url.port === '') throw expected(key, 'a URL with an explicit port', text);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '') {
    throw expected(key, 'a URL with only a host and a port', text);
  }
  const port = Number(url.port);
  if (port < 1 || port > 65535) throw expected(key, 'a URL with a port from 1 to 65535', text);
  // The URL parser turns 127.1 and 2130706433 into 127.0.0.1 but leaves [::ffff:127.0.0.1] as
  // [::ffff:7f00:1]: take it as its IPv4 address too, so it is spawned and caught as a repeat alike.
  const hostname = mappedIPv4(url.hostname) ?? url.hostname;
  const local = LOCAL_HOSTS.has(hostname);
  // Connect to the address itself, not "localhost": it may resolve to ::1 first while the worker binds 127.0.0.1.
  const host = hostname === 'localhost' ? '127.0.0.1' : hostname.replace(/^\[|\]$/g, '');
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const id = workerId(host, port);
  return { url: `http://${urlHost}:${port}`, host, port, local, id };
}

/** True for the host names and addresses of this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  return LOCAL_HOSTS.has(host) || LOCAL_HOSTS.has(`[${host}]`);
}

/**
 * A worker's stable name (log file, write-ahead log folder): `worker-<port>` on loopback,
 * `worker-<host>-<port>` elsewhere. A worker run by hand finds its own the same way.
 */
export function workerId(host: string, port: number): string {
  return isLoopbackHost(host) ? `worker-${port}` : `worker-${host.replace(/[^A-Za-z0-9.-]/g, '_')}-${port}`;
}

/** The most workers a config may name (as a number or a list). */
const MAX_WORKERS = 256;

function workersKey(raw: Raw, port: number, host: string): WorkerSpec[] {
  const value = raw.workers ?? 4;
  let workers: WorkerSpec[];
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > MAX_WORKERS || port + value > 65535) {
      throw expected('workers', `a list of URLs or a whole number from 0 to ${Math.min(MAX_WORKERS, 65535 - port)}`, value);
    }
    workers = Array.from({ length: value }, (_, i) => workerFromUrl(`http://127.0.0.1:${port + 1 + i}`, i));
  } else if (Array.isArray(value)) {
    if (value.length > MAX_WORKERS) throw new ConfigError(`Expected \`workers\` to list at most ${MAX_WORKERS} URLs, got ${value.length}`, 'workers');
    workers = value.map((entry, i) => workerFromEntry(entry, i));
  } else {
    throw expected('workers', 'a list of URLs or a whole number', value);
  }
  const seen = new Map<string, number>();
  workers.forEach((worker, i) => {
    // Local workers are named by port alone (worker-5001), so two loopback spellings of one port clash.
    const key = isLoopbackHost(worker.host) ? `local:${worker.port}` : `${worker.host}:${worker.port}`;
    const before = seen.get(key);
    if (before !== undefined) throw new ConfigError(`\`workers[${i}]\` repeats \`workers[${before}]\` (${worker.url})`, `workers[${i}]`);
    if (isLoopbackHost(worker.host) && worker.port === port) {
      throw new ConfigError(`\`workers[${i}]\` uses the coordinator's own port ${port}`, `workers[${i}]`);
    }
    // Any other spelling of the coordinator's own address would make it forward to itself.
    if (worker.port === port && reachesListener(worker.host, host)) {
      throw new ConfigError(`\`workers[${i}]\` (${worker.url}) is the coordinator's own address (it listens on ${host}:${port}): requests would be forwarded to itself`, `workers[${i}]`);
    }
    seen.set(key, i);
  });
  return workers;
}

function redisUrl(text: unknown, key: string): string {
  const what = 'a Redis URL like redis://host:6379';
  if (typeof text !== 'string') throw expected(key, what, text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw expected(key, what, text);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw expected(key, what, text);
  if (url.hostname === '') throw expected(key, what, text);
  return text;
}

/** `store`: `files`, one `redis://` URL, or a list of Redis Cluster node URLs. */
function storeKey(raw: Raw): StoreSpec {
  const value = raw.store ?? 'files';
  if (value === 'files') return { kind: 'files' };
  if (typeof value === 'string') return { kind: 'redis', urls: [redisUrl(value, 'store')], cluster: false };
  if (Array.isArray(value) && value.length > 0 && value.length <= MAX_WORKERS) {
    return { kind: 'redis', urls: value.map((entry, i) => redisUrl(entry, `store[${i}]`)), cluster: true };
  }
  throw expected('store', "'files', a Redis URL (redis://host:6379) or a list of Redis Cluster node URLs", value);
}

function optionalString(raw: Raw, key: string, what: string): string | null {
  const value = raw[key] ?? null;
  if (value !== null && (typeof value !== 'string' || value.trim() === '')) throw expected(key, what, value);
  return value as string | null;
}

/** Validates a parsed YAML document; relative paths are resolved against `baseDir`. */
export function validateConfig(raw: unknown, baseDir: string, warn: (message: string) => void = () => {}): Config {
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`Expected the config to be a mapping of keys, got ${show(raw)}`);
  const r = raw as Raw;
  for (const key of Object.keys(r)) {
    if (!CONFIG_KEYS.has(key)) warn(`config key \`${key}\` is unknown and ignored (check its spelling)`);
  }
  const port = numberKey(r, 'port', 5000, 1, 65535, true);
  const durability = r.durability ?? 'fsync';
  if (durability !== 'fsync' && durability !== 'write' && durability !== 'off') {
    throw expected('durability', "one of 'fsync', 'write', 'off'", durability);
  }
  const coalesce = r.coalesce ?? true;
  if (typeof coalesce !== 'boolean') throw expected('coalesce', 'true or false', coalesce);
  const workerHost = r.worker_host ?? null;
  if (workerHost !== null && (typeof workerHost !== 'string' || workerHost.trim() === '')) {
    throw expected('worker_host', 'an address such as 127.0.0.1 or 0.0.0.0', workerHost);
  }
  const logLevel = r.log_level ?? 'info';
  if (!(LOG_LEVELS as readonly unknown[]).includes(logLevel)) throw expected('log_level', `one of ${LOG_LEVELS.map((level) => `'${level}'`).join(', ')}`, logLevel);
  const host = stringKey(r, 'host', '127.0.0.1');
  const secretFile = optionalString(r, 'secret_file', 'a file path');
  const secretEnv = optionalString(r, 'secret_env', 'an environment variable name');
  if (secretFile !== null && secretEnv !== null) throw new ConfigError('Expected one of `secret_file` and `secret_env`, not both', 'secret_env');
  const forwardTimeout = numberKey(r, 'forward_timeout', 5, 0);
  const forwardDeadline = numberKey(r, 'forward_deadline', 15, 0);
  if (forwardDeadline < forwardTimeout) {
    throw new ConfigError(`Expected \`forward_deadline\` (${forwardDeadline}) to be at least \`forward_timeout\` (${forwardTimeout})`, 'forward_deadline');
  }
  return {
    port,
    host,
    workers: workersKey(r, port, host),
    database: path.resolve(baseDir, stringKey(r, 'database', 'db/')),
    worker_logs: path.resolve(baseDir, stringKey(r, 'worker_logs', 'logs/')),
    worker_persist: numberKey(r, 'worker_persist', 5, 0, 86400),
    worker_publish: publishKey(r),
    config_check: numberKey(r, 'config_check', 5, 0, 86400),
    worker_host: workerHost as string | null,
    durability,
    forward_timeout: forwardTimeout,
    forward_deadline: forwardDeadline,
    health_check: numberKey(r, 'health_check', 1, 0, 3600),
    kill_timeout: numberKey(r, 'kill_timeout', 10, 0, 3600),
    // proper-lockfile refuses a stale time under 2 s.
    lock_stale: numberKey(r, 'lock_stale', 5, 2, 3600),
    max_body_bytes: numberKey(r, 'max_body_bytes', 4 * 1024 * 1024, 64, 1024 * 1024 * 1024, true),
    max_batch_items: numberKey(r, 'max_batch_items', 10_000, 1, 10_000_000, true),
    max_id_length: numberKey(r, 'max_id_length', 256, 1, 65536, true),
    max_tenant_length: numberKey(r, 'max_tenant_length', 256, 1, 4096, true),
    coalesce,
    max_connections: numberKey(r, 'max_connections', defaultMaxConnections(), 1, 10_000_000, true),
    store: storeKey(r),
    secret_file: secretFile === null ? null : path.resolve(baseDir, secretFile),
    secret_env: secretEnv,
    max_count_tenants: numberKey(r, 'max_count_tenants', 1000, 1, 10_000, true),
    count_floor_tenants: numberKey(r, 'count_floor_tenants', 100_000, 1, 100_000_000, true),
    log_level: logLevel as LogLevel,
  };
}

/** The ConfigError for text the YAML parser refused; `reason` is the parser's message (its first line is kept). */
export function yamlSyntaxError(reason: string, cause?: unknown): ConfigError {
  return new ConfigError(`The config is not valid YAML: ${reason.split('\n')[0]}`, undefined, { cause });
}

/**
 * The YAML parser, loaded when a config is first parsed: a worker started by the
 * coordinator gets its config over IPC and never needs it (it is ~40 ms of start-up).
 */
let yamlParse: typeof import('yaml').parse | undefined;
function parseYaml(text: string, options: import('yaml').ParseOptions & import('yaml').DocumentOptions & import('yaml').SchemaOptions & import('yaml').ToJSOptions): unknown {
  yamlParse ??= (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse;
  return yamlParse(text, options);
}

/** Parses YAML text into a config; throws ConfigError with the reason (and line) when it cannot. */
export function parseConfig(text: string, baseDir: string, warn?: (message: string) => void): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw yamlSyntaxError(err instanceof Error ? err.message : String(err), err);
  }
  return validateConfig(raw, baseDir, warn);
}

/** Reads and validates a config file; relative paths in it are relative to its folder. */
export function loadConfig(file: string, warn?: (message: string) => void): Config {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`Cannot read the config file ${absolute} (${code})`, undefined, { cause: err });
  }
  return parseConfig(text, path.dirname(absolute), warn);
}
