import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config, type WorkerSpec } from '../shared/config.js';
import { readClusterSecret } from '../shared/control-secret.js';
import { DATA_DIR_MODE } from '../shared/data-modes.js';
import { Logger } from '../shared/log.js';
import { startProcessMetrics } from '../shared/metrics.js';
import { describeError } from '../shared/describe-error.js';
import { runWorker } from './run-worker.js';

/**
 * `countapp worker --config PATH --port N [--host ADDR]`: one worker run by hand, on
 * another host (or on this one, listed as `{url, spawn: false}`). The coordinator lists it
 * by URL, health-checks it, forwards to it and sends it the membership over HTTP; it never
 * spawns or stops it. Its config is the cluster's (the same file, or a copy): it finds
 * itself in `workers` by port (and host), reads the cluster secret from `secret_file` or
 * `secret_env`, and logs to `worker_logs/<its id>.log` and stdout.
 */

const USAGE = `Usage: countapp worker --config PATH --port N [--host ADDR]

Runs one worker of a CountApp cluster by hand (e.g. on another host). It must be listed
in the config's \`workers\` (an entry with port N; on this machine's loopback as
{url: http://127.0.0.1:N, spawn: false}), and the config must name the cluster secret
(\`secret_file\` or \`secret_env\`), the same one the coordinator reads.
  --config PATH   the cluster's config file
  --port N        the port of its \`workers\` entry, and the one it listens on
  --host ADDR     the address to listen on (default: \`worker_host\`, else the entry's host);
                  also picks the entry when several have port N
  --help          this text`;

function fail(message: string): never {
  throw new ConfigError(message);
}

/** The `workers` entry this worker is: the one with its port (and host, when several share the port). */
function findEntry(config: Config, port: number, host: string | undefined, file: string): WorkerSpec {
  const byPort = config.workers.filter((worker) => worker.port === port);
  const entries = byPort.length > 1 && host !== undefined ? byPort.filter((worker) => worker.host === host) : byPort;
  if (entries.length === 0) fail(`no \`workers\` entry of ${file} has port ${port}: list this worker there (the coordinator's config too), e.g. http://<this host>:${port}`);
  if (entries.length > 1) fail(`several \`workers\` entries of ${file} have port ${port} (${entries.map((e) => e.url).join(', ')}): say which with --host`);
  const entry = entries[0]!;
  if (entry.local) {
    fail(`${entry.url} is a worker the coordinator spawns itself; to run it by hand, write it as {url: ${entry.url}, spawn: false} in the config`);
  }
  return entry;
}

/** Runs the worker until it is stopped (the process exits then). */
export async function main(argv: readonly string[]): Promise<never> {
  let log = new Logger('worker');
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: { config: { type: 'string', short: 'c' }, port: { type: 'string', short: 'p' }, host: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (values.config === undefined || values.port === undefined) fail(`--config and --port are needed\n\n${USAGE}`);
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`--port must be a port number, got ${JSON.stringify(values.port)}`);
    const file = path.resolve(values.config);
    const config = loadConfig(file, (message) => log.warn(message));
    const spec = findEntry(config, port, values.host, file);
    const secret = readClusterSecret(config);
    if (secret === undefined) fail(`a worker run by hand needs the cluster secret: set \`secret_file\` (or \`secret_env\`) in ${file} and in the coordinator's config`);
    log = new Logger(spec.id, path.join(config.worker_logs, `${spec.id}.log`), { level: config.log_level });
    startProcessMetrics(spec.id);
    mkdirSync(config.worker_logs, { recursive: true, mode: DATA_DIR_MODE });
    await runWorker({
      config,
      spec,
      host: values.host ?? config.worker_host ?? spec.host,
      secret,
      members: [],
      log,
      onReady: (url) => log.info(`${spec.id} ready at ${url}; the coordinator checks it and sends it the membership`),
      onFatal: () => {},
    });
  } catch (err) {
    const message = err instanceof ConfigError ? err.message : `cannot start: ${describeError(err)}`;
    if (!(err instanceof ConfigError)) log.error(message, err);
    process.stderr.write(`countapp worker: ${message}\n`);
    process.exit(1);
  }
  // The worker runs until a signal or /kill ends the process.
  return new Promise<never>(() => {});
}

// As a spawned worker does (see main.ts): more threads for the fsyncs, and a crash exits at once (the log keeps what was acknowledged).
process.env.UV_THREADPOOL_SIZE ??= '16';
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (err: unknown) => {
    process.stderr.write(`countapp worker: ${event}; exiting (acknowledged items are safe in the write-ahead log): ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(70);
  });
}
