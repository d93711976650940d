import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../shared/config.js';
import { isCoordinatorMessage, type CoordinatorMessage, type WorkerMessage } from '../shared/ipc.js';
import { Logger } from '../shared/log.js';
import { describeDiskError } from './disk-error.js';
import { Persister } from './persister.js';
import { createWorkerServer, type WorkerServer } from './server.js';
import { TenantStore } from './tenant-store.js';
import { WalAdopter, claimWal, releaseWal } from './wal-owner.js';
import { Wal, listSegments, readSegments } from './wal.js';

/**
 * A worker process. The coordinator forks it and sends `init` over IPC (the secret
 * travels there, never in argv or the environment). Start-up: claim the write-ahead
 * log, replay what a previous run left, put it into the tenant files, then listen and
 * report `ready`. It stops gracefully (persist, then exit) on /kill, SIGINT, SIGTERM, or
 * when the coordinator goes away, so it never runs on as an orphan.
 */

// fsyncs of the write-ahead log and of tenant files share libuv's thread pool (4 by
// default) with every other file operation; a few more threads keep reads from queueing
// behind them. Set before the first asynchronous file operation creates the pool.
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
      reject(new Error('a worker is started by the coordinator (run `countapp --config config.yaml`)'));
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
  let config: Config = init.config;
  const { workerId, secret } = init;
  log = new Logger(workerId);
  const spec = config.workers.find((worker) => worker.id === workerId);
  if (spec === undefined) throw new Error(`${workerId} is not in the config it was given`);
  const staleMs = config.lock_stale * 1000;
  const walRoot = path.join(config.database, '.wal');
  const walFolder = path.join(walRoot, workerId);

  await mkdir(walRoot, { recursive: true });
  await claimWal(walRoot, workerId, staleMs);
  const leftover = await listSegments(walFolder);
  const wal = await Wal.open(walFolder, config.durability);
  const store = new TenantStore({ database: config.database, log, lockStaleMs: staleMs, sync: () => config.durability === 'fsync' });
  const adopter = new WalAdopter({ walRoot, selfId: workerId, staleMs, log });
  const persister = new Persister({ store, wal, adopter, log, intervalMs: config.worker_persist * 1000, phase: init.phase });

  if (leftover.length > 0) {
    const { pairs, badLines } = await readSegments(walFolder, leftover);
    const added = store.addPairs(pairs);
    const round = await persister.persistNow();
    log.info(`recovered ${pairs.length / 2} logged pair(s) (${added} not yet in memory${badLines ? `, ${badLines} torn line(s) skipped` : ''}) from ${leftover.length} segment(s); ${round.ok ? 'persisted' : 'kept pending (persist failed)'}`);
  }

  let server: WorkerServer | undefined;
  let stopping: Promise<{ persisted: number; clean: boolean }> | undefined;
  /** Stop taking work, persist everything; idempotent. */
  const drain = (reason: string): Promise<{ persisted: number; clean: boolean }> => {
    stopping ??= (async () => {
      log.info(`stopping (${reason}): persisting`);
      server?.beginShutdown();
      const round = await persister.close();
      await wal.close();
      const clean = round.ok && store.pendingIds() === 0;
      if (clean) await releaseWal(walRoot, workerId).catch(() => {});
      else log.error(`stopping with ${store.pendingIds()} id(s) not persisted: they stay in the write-ahead log ${walFolder} and are recovered on the next start or by another worker`);
      return { persisted: round.ids, clean };
    })();
    return stopping;
  };
  let exiting = false;
  const exit = async (reason: string): Promise<void> => {
    if (exiting) return;
    exiting = true;
    const { clean } = await drain(reason);
    await server?.close();
    log.info(clean ? 'stopped; everything persisted' : 'stopped');
    process.exit(clean ? 0 : 1);
  };

  server = createWorkerServer({
    workerId,
    config: () => config,
    store,
    wal,
    log,
    secret,
    onKill: () => drain('asked by the coordinator'),
    onKilled: () => { void exit('asked by the coordinator'); },
  });
  const host = config.worker_host ?? spec.host;
  try {
    await server.listen(spec.port, host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
    const message = code === 'EADDRINUSE' ? `port ${spec.port} is already in use by another program` : `cannot listen on ${host}:${spec.port} (${code})`;
    log.error(message, err);
    send({ type: 'fatal', code, message });
    await persister.close();
    await wal.close();
    process.exit(1);
  }
  persister.start();
  log.info(`listening on ${host}:${spec.port} (durability: ${config.durability}, persist every ${config.worker_persist} s)`);
  send({ type: 'ready', url: spec.url });

  process.on('message', (message: unknown) => {
    if (!isCoordinatorMessage(message) || message.type !== 'config') return;
    config = { ...message.config, database: config.database };
    persister.setInterval(config.worker_persist * 1000);
    wal.setDurability(config.durability);
  });
  process.on('disconnect', () => { void exit('the coordinator went away'); });
  process.on('SIGINT', () => { void exit('SIGINT'); });
  process.on('SIGTERM', () => { void exit('SIGTERM'); });
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
  const message = `cannot start: ${describeDiskError(err)}`;
  log.error(message, err);
  send({ type: 'fatal', code: (err as NodeJS.ErrnoException).code ?? 'ERROR', message });
  process.exitCode = 1;
  // Let the IPC message go out before the process ends.
  setTimeout(() => process.exit(1), 100).unref();
});
