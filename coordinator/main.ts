#!/usr/bin/env node
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, type Config } from '../shared/config.js';
import { DATA_DIR_MODE } from '../shared/data-modes.js';
import { describeError } from '../shared/describe-error.js';
import { loadExpress } from '../shared/http-server.js';
import { Logger } from '../shared/log.js';
import { startProcessMetrics } from '../shared/metrics.js';
import { LockHeldError, ProcessLock, canonicalPath } from '../shared/process-lock.js';
import { removeLeftLocks } from './left-locks.js';
import { runClientCommand } from './cli/client-commands.js';
import { parseCommandLine, type Command } from './cli/command-line.js';
import { EXIT, UsageError } from './cli/usage-error.js';
import { Coalescer } from './coalescer.js';
import { CountFloors } from './count-floors.js';
import { parseConfigText, readConfigFile } from './config-file.js';
import { ConfigWatcher } from './config-watcher.js';
import { capConnections } from './connection-cap.js';
import { Forwarder } from './forwarder.js';
import { ReadPath } from './read-path.js';
import { watchCluster, watchCoalescer } from './ops/metrics.js';
import { createCoordinatorServer } from './server.js';
import { StrongReads } from './strong-read.js';
import { Supervisor } from './supervisor.js';
import { loadUndici } from './undici.js';

/**
 * `countapp`: with no command (or `run`) it runs a cluster in the foreground — SIGINT or
 * SIGTERM stops it gracefully (every worker persists and exits); a second signal forces
 * the exit. The other commands (status, count, post, worker, --help, --version) are in
 * cli/; see cli/usage.ts.
 */

/** The process lock a coordinator holds on its database for its whole life. */
const CLUSTER_LOCK = 'cluster';

async function main(configFile: string): Promise<void> {
  // Held until the log file is known, so the config's own warnings land in coordinator.log too.
  const log = new Logger('coordinator', undefined, { holdUntilFile: true });
  let text: string;
  try {
    text = await readConfigFile(configFile);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot read the config file ${configFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, undefined, { cause: err });
  }
  let config: Config = await parseConfigText(text, path.dirname(configFile), (message) => log.warn(message));
  log.setLevel(config.log_level);
  // One cluster per database, decided before anything in it is touched (see ProcessLock).
  let clusterLock: ProcessLock;
  try {
    clusterLock = await ProcessLock.acquire(config.database, CLUSTER_LOCK, { pid: process.pid, role: 'coordinator', detail: `port ${config.port}` });
  } catch (err) {
    if (!(err instanceof LockHeldError)) throw err;
    const holder = err.holder === undefined ? 'another process' : `coordinator pid ${err.holder.pid}${err.holder.detail === undefined ? '' : `, ${err.holder.detail}`}`;
    throw new ConfigError(`the database ${canonicalPath(config.database)} is in use by another CountApp cluster (${holder}): stop that one, or give this one another \`database\``, 'database', { cause: err });
  }
  for (const key of ['database', 'worker_logs'] as const) {
    try {
      mkdirSync(config[key], { recursive: true, mode: DATA_DIR_MODE });
    } catch (err) {
      throw new ConfigError(`cannot create \`${key}\` folder ${config[key]} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, key, { cause: err });
    }
  }
  log.setFile(path.join(config.worker_logs, 'coordinator.log'));
  log.info(`starting with ${configFile}: ${config.workers.length} worker(s), database ${config.database}`);

  const workerEntry = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'worker', 'main.js');
  const supervisor = new Supervisor({ log, workerEntry });
  const forwarder = new Forwarder({
    log,
    config,
    liveWorkers: () => supervisor.liveWorkers(),
    markSuspect: (url) => supervisor.markSuspect(url),
  });
  const coalescer = new Coalescer({ forwarder, config, secret: () => supervisor.controlSecret });
  const strong = new StrongReads({
    log,
    config,
    targets: () => supervisor.flushTargets(),
    secret: () => supervisor.controlSecret,
    liveChangedAt: () => supervisor.liveChangedAt,
  });
  const floors = new CountFloors(config.count_floor_tenants);
  const reads = new ReadPath({ forwarder, strong, floors });
  const watcher = new ConfigWatcher({ file: configFile, log, initial: config, initialText: text });
  startProcessMetrics();
  watchCoalescer(() => coalescer.queued);
  watchCluster(() => supervisor.status(), () => watcher.problem !== undefined);
  const http = createCoordinatorServer({ config, log, reads, coalescer, status: () => supervisor.status(), configFile, configProblem: () => watcher.problem });
  try {
    await http.listen(config.port, config.host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'EADDRINUSE' ? `port ${config.port} is already in use by another program: stop it or change \`port\`` : `cannot listen on ${config.host}:${config.port} (${code ?? String(err)})`,
      'port',
      { cause: err },
    );
  }
  log.info(`coordinator listening on http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`);
  const cap = capConnections(http.server, config.max_connections, log);

  // The database the cluster lock covers: a changed `database` waits for a restart.
  const database = config.database;
  // Whether every worker this coordinator was ever given ran here (see removeLeftLocks).
  let onlySpawnedWorkers = config.workers.every((worker) => worker.local);
  watcher.on('config', (next: Config) => {
    config = next;
    onlySpawnedWorkers &&= next.workers.every((worker) => worker.local);
    log.setLevel(next.log_level);
    forwarder.setConfig(next);
    coalescer.setConfig(next);
    strong.setConfig(next);
    floors.setMax(next.count_floor_tenants);
    http.setConfig(next);
    cap.set(next.max_connections);
    log.info(`config reloaded: ${next.workers.length} worker(s)`);
    supervisor.apply(next).catch((err: unknown) => log.error('could not apply the new config', err));
  });

  let stopping: Promise<void> | undefined;
  const stop = (signal: string): void => {
    if (stopping !== undefined) {
      log.warn(`${signal} again: exiting now without waiting for the workers`);
      process.exit(1);
    }
    log.info(`${signal}: stopping the cluster (every worker persists first)`);
    stopping = (async () => {
      // From here new batches and counts are answered 503 shutting_down, while /readyz,
      // /status and the other observing routes still answer: the server stops listening
      // only once the workers have stopped, so a probe sees the stop (not a refused
      // connection) for as long as the workers persist.
      http.beginShutdown();
      for (const [name, step] of [
        ['config watcher', () => watcher.close()],
        ['batches under way', () => coalescer.close()],
        ['workers', () => supervisor.close()],
        ['locks left by killed workers', () => (onlySpawnedWorkers ? removeLeftLocks(database, log) : Promise.resolve())],
        ['HTTP server', () => http.close()],
        ['connection cap', () => cap.close()],
        ['forwarder', () => forwarder.close()],
        ['strong reads', () => strong.close()],
      ] as const) {
        try {
          await step();
        } catch (err) {
          log.error(`while stopping the ${name}`, err);
        }
      }
      await clusterLock.release();
      log.info('stopped');
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  await supervisor.start(config);
  await watcher.start();
  log.info('cluster ready');
  // Now that the workers are up, the packages the first requests will need: the
  // forwarder's HTTP client and express (operations pages), so no client pays for them.
  setImmediate(() => {
    try {
      loadUndici();
      loadExpress();
    } catch (err) {
      log.warn(`could not load a package ahead of its first use (${describeError(err)}); it is loaded at that use`);
    }
  });
}

function run(configFile: string): void {
  main(configFile).catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`countapp: ${err.message}\n`);
    } else {
      // A bug, not a user mistake: the stack helps whoever reports it.
      process.stderr.write(`countapp: cannot start: ${err instanceof Error ? err.stack : String(err)}\n`);
    }
    process.exit(1);
  });
}

let command: Command;
try {
  command = parseCommandLine(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`countapp: ${err.message} (countapp --help says how)\n`);
  process.exit(EXIT.usage);
}
if (command.kind === 'run') run(command.configFile);
else runClientCommand(command).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`countapp: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = EXIT.failed;
});
