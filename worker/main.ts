import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../shared/config.js';
import { DATA_DIR_MODE } from '../shared/data-modes.js';
import { isCoordinatorMessage, type CoordinatorMessage, type WorkerMessage } from '../shared/ipc.js';
import { Logger } from '../shared/log.js';
import { startProcessMetrics } from '../shared/metrics.js';
import { LockHeldError, ProcessLock } from '../shared/process-lock.js';
import { describeDiskError } from './disk-error.js';
import { watchWorkerState } from './metrics.js';
import { Pending } from './pending.js';
import { Persister } from './persister.js';
import { createWorkerServer, type WorkerServer } from './server.js';
import { FileStore } from './store/files.js';
import { WalAdopter, walLockName } from './wal-adopter.js';
import { replaySegments } from './wal-records.js';
import { walFolderBytes } from './wal-size.js';
import { Wal, dropSegments, listSegments } from './wal.js';

/**
 * A worker process. The coordinator forks it and sends `init` over IPC (the secret
 * travels there, never in argv or the environment). Start-up: hold its write-ahead log
 * (a process lock, for its whole life) before touching anything, replay what a previous
 * run left into memory, then listen and report `ready`. It stops gracefully (persist
 * within its time, then exit) on /kill, SIGINT, SIGTERM, or when the coordinator goes
 * away, so it never runs on as an orphan.
 */

// fsyncs of the write-ahead log and of tenant files share libuv's thread pool (4 by
// default) with every other file operation; a few more threads keep them from queueing
// behind each other. Set before the first asynchronous file operation creates the pool.
process.env.UV_THREADPOOL_SIZE ??= '16';

/** How long a starting worker waits for another worker to finish adopting its log. */
const ADOPTION_WAIT_MS = 60_000;
/** What a stopping worker keeps of `kill_timeout` for itself: the rest is for persisting. */
const STOP_MARGIN_MS = 1500;
/** A stopping worker persists again after this pause while ids keep arriving (hand-overs from workers stopping with it). */
const FINAL_ROUND_PAUSE_MS = 50;
/** How long a restarted worker waits to learn the membership before persisting what its log kept anyway. */
const MEMBERSHIP_WAIT_MS = 3000;
/** How long requests still under way get once the worker has persisted and let go of its locks. */
const EXIT_GRACE_MS = 500;
/** A hand-over to another worker may take this long before the ids are written here instead. */
const HANDOFF_TIMEOUT_MS = 5000;

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

/**
 * Takes this worker's log lock. Another worker adopting the log (this worker had died)
 * is waited for; any other holder means another cluster runs on this database.
 */
async function holdWal(database: string, workerId: string): Promise<ProcessLock> {
  const deadline = Date.now() + ADOPTION_WAIT_MS;
  for (;;) {
    try {
      return await ProcessLock.acquire(database, walLockName(workerId), { pid: process.pid, role: 'worker', detail: workerId });
    } catch (err) {
      if (!(err instanceof LockHeldError)) throw err;
      if (err.holder?.role !== 'adopting' || Date.now() >= deadline) {
        throw new Error(`the write-ahead log of ${workerId} in ${database} is in use: ${err.message}. Is another CountApp cluster running on this database?`, { cause: err });
      }
      await sleep(100);
    }
  }
}

async function main(): Promise<void> {
  const init = await waitForInit();
  let config: Config = init.config;
  const { workerId, secret } = init;
  log = new Logger(workerId, undefined, { level: config.log_level });
  startProcessMetrics(workerId);
  const spec = config.workers.find((worker) => worker.id === workerId);
  if (spec === undefined) throw new Error(`${workerId} is not in the config it was given`);
  const database = config.database;

  // Nothing in the database is read, written or deleted before this lock is ours.
  const walLock = await holdWal(database, workerId);
  const walRoot = path.join(database, '.wal');
  const walFolder = path.join(walRoot, workerId);
  await mkdir(walRoot, { recursive: true, mode: DATA_DIR_MODE });

  const pending = new Pending();
  const leftover = await listSegments(walFolder);
  if (leftover.length > 0) {
    const { records, badLines } = await replaySegments(walFolder, leftover, pending);
    log.info(`recovered ${pending.ids} id(s) of ${pending.tenants} tenant(s) from ${records} record(s) in ${leftover.length} write-ahead log segment(s)${badLines ? ` (${badLines} torn line(s) skipped)` : ''}; persisting them once serving`);
  }
  let persister: Persister | undefined;
  const wal = await Wal.open(walFolder, {
    durability: config.durability,
    unpersisted: () => persister?.unpersistedRecords() ?? pending.toRecords(),
  });
  const store = new FileStore({
    database,
    workerId,
    log,
    secret: () => secret,
    lockStaleMs: config.lock_stale * 1000,
    thread: true,
    sync: () => config.durability === 'fsync',
    handoffTimeoutMs: () => Math.min(HANDOFF_TIMEOUT_MS, config.forward_timeout * 1000),
  });
  store.setMembers(init.members);
  const adopter = new WalAdopter({ database, walRoot, selfId: workerId, log });
  persister = new Persister({ wal, pending, store, adopter, log, intervalMs: config.worker_persist * 1000, phase: 0 });
  const rounds = persister;
  watchWorkerState({ pendingIds: () => pending.ids, walBytes: () => walFolderBytes(walFolder), lastPersistAt: () => rounds.lastRound?.at });

  let server: WorkerServer | undefined;
  let stopping: Promise<{ persisted: boolean; pending: number }> | undefined;
  /** Stop taking batches, persist within kill_timeout; idempotent. */
  const drain = (reason: string): Promise<{ persisted: boolean; pending: number }> => {
    stopping ??= (async () => {
      const stopBy = Date.now() + Math.max(500, config.kill_timeout * 1000 - STOP_MARGIN_MS);
      log.info(`stopping (${reason}): persisting`);
      server?.beginShutdown();
      let round = await rounds.close(stopBy);
      // Ids other workers handed over meanwhile (they are stopping too) go into the files as well, while time allows.
      while (pending.ids > 0 && Date.now() < stopBy - FINAL_ROUND_PAUSE_MS) {
        await sleep(FINAL_ROUND_PAUSE_MS);
        round = await rounds.persistNow(stopBy);
      }
      const persisted = round.ok && pending.ids === 0;
      if (!persisted) {
        log.warn(`stopping with ${pending.ids} id(s) not yet persisted: they stay in the write-ahead log ${walFolder} and are persisted at the next start (or by another worker)`);
      }
      return { persisted, pending: pending.ids };
    })();
    return stopping;
  };
  let exiting = false;
  const exit = async (reason: string): Promise<void> => {
    if (exiting) return;
    exiting = true;
    const { persisted } = await drain(reason);
    // The shard locks first: whatever happens next, a stop never leaves one behind.
    await store.close().catch((err: unknown) => log.error('could not let go of the shard locks', err));
    await wal.close();
    // Hand-overs taken after the last round are in the log: keep it then.
    if (persisted && pending.ids === 0) {
      const left = await listSegments(walFolder).catch(() => [0, 0]);
      if (left.length <= 1 && wal.status().bytes === 0) {
        await dropSegments(walFolder, left).catch(() => {});
        await rmdir(walFolder).catch(() => {});
      }
    }
    await walLock.release();
    log.info(persisted ? 'stopped; everything persisted' : 'stopped; the write-ahead log keeps the rest');
    // Requests still under way can no longer be logged: a moment to answer them, no more.
    await server?.close(EXIT_GRACE_MS);
    process.exit(0);
  };

  server = createWorkerServer({
    workerId,
    config: () => config,
    pending,
    store,
    wal,
    persister,
    log,
    secret,
    status: () => ({
      pending: pending.ids,
      pendingTenants: pending.tenants,
      persisting: rounds.inFlightIds(),
      wal: wal.status(),
      walBytes: walFolderBytes(walFolder),
      lastPersist: rounds.lastRound,
      store: store.status(),
    }),
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
    await wal.close();
    await walLock.release();
    process.exit(1);
  }
  persister.start();
  // What the last run left is persisted now rather than a whole interval later — once this
  // worker knows the membership (the coordinator sends it as soon as this one is live), so
  // the ids go to the workers that write their tenants' files.
  let recovered = leftover.length > 0;
  const persistRecovered = (): void => {
    if (!recovered) return;
    recovered = false;
    rounds.persistNow().catch((err: unknown) => log.error('persisting the recovered ids failed; the next round retries', err));
  };
  if (recovered) setTimeout(persistRecovered, MEMBERSHIP_WAIT_MS).unref();
  log.info(`listening on ${host}:${spec.port} (durability: ${config.durability}, persist every ${config.worker_persist} s)`);
  send({ type: 'ready', url: spec.url });

  process.on('message', (message: unknown) => {
    if (!isCoordinatorMessage(message)) return;
    if (message.type === 'members') {
      store.setMembers(message.members);
      if (message.members.some((member) => member.id === workerId)) persistRecovered();
    } else if (message.type === 'config') {
      config = { ...message.config, database: config.database };
      log.setLevel(config.log_level);
      rounds.setInterval(config.worker_persist * 1000);
      store.setStaleMs(config.lock_stale * 1000);
      wal.setDurability(config.durability);
    }
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
