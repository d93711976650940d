import type { Config } from '../shared/config.js';
import { isCoordinatorMessage, type CoordinatorMessage, type WorkerMessage } from '../shared/ipc.js';
import { Logger } from '../shared/log.js';
import { startProcessMetrics } from '../shared/metrics.js';
import { describeError } from '../shared/describe-error.js';
import { runWorker } from './run-worker.js';

/**
 * A worker process spawned by the coordinator. It is forked and sent `init` over IPC (the
 * secret travels there, never in argv or the environment); the membership and config
 * changes follow over the same channel. It stops gracefully (persist within its time,
 * then exit) on /kill, SIGINT, SIGTERM, or when the coordinator goes away, so it never
 * runs on as an orphan. A worker run by hand on another host is standalone.ts.
 */

// fsyncs of the write-ahead log and of tenant files share libuv's thread pool (4 by
// default) with every other file operation; a few more threads keep them from queueing
// behind each other. Set before the first asynchronous file operation creates the pool.
process.env.UV_THREADPOOL_SIZE ??= '16';

let log = new Logger('worker');

function send(message: WorkerMessage): void {
  try {
    process.send?.(message);
  } catch {
    // The coordinator is gone; the disconnect handler takes care of us.
  }
}

function waitForInit(): Promise<Extract<CoordinatorMessage, { type: 'init' }>> {
  return new Promise((resolve, reject) => {
    if (process.send === undefined) {
      reject(new Error('a worker is started by the coordinator (run `countapp --config config.yaml`, or `countapp worker --config PATH --port N` for one run by hand)'));
      return;
    }
    const timer = setTimeout(() => reject(new Error('no init message from the coordinator within 15 s')), 15_000);
    process.once('message', (message: unknown) => {
      clearTimeout(timer);
      if (isCoordinatorMessage(message) && message.type === 'init') resolve(message);
      else reject(new Error('the first message from the coordinator was not init'));
    });
  });
}

async function main(): Promise<void> {
  const init = await waitForInit();
  const config: Config = init.config;
  const { workerId, secret } = init;
  log = new Logger(workerId, undefined, { level: config.log_level });
  startProcessMetrics(workerId);
  const spec = config.workers.find((worker) => worker.id === workerId);
  if (spec === undefined) throw new Error(`${workerId} is not in the config it was given`);
  const worker = await runWorker({
    config,
    spec,
    host: config.worker_host ?? spec.host,
    secret,
    members: init.members,
    log,
    onReady: (url) => send({ type: 'ready', url }),
    onFatal: (code, message) => send({ type: 'fatal', code, message }),
  });
  process.on('message', (message: unknown) => {
    if (!isCoordinatorMessage(message)) return;
    if (message.type === 'members') worker.setMembers(message.members);
    else if (message.type === 'config') worker.setConfig(message.config);
  });
  process.on('disconnect', () => { void worker.exit('the coordinator went away'); });
}

process.on('uncaughtException', (err) => {
  log.error('uncaught exception; exiting (acknowledged items are safe in the write-ahead log)', err);
  process.exit(70);
});
process.on('unhandledRejection', (err) => {
  log.error('unhandled rejection; exiting (acknowledged items are safe in the write-ahead log)', err);
  process.exit(70);
});

main().catch((err: unknown) => {
  const message = `cannot start: ${describeError(err)}`;
  log.error(message, err);
  send({ type: 'fatal', code: (err as NodeJS.ErrnoException).code ?? 'ERROR', message });
  process.exitCode = 1;
  // Let the IPC message go out before the process ends.
  setTimeout(() => process.exit(1), 100).unref();
});
