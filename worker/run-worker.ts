import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isLoopbackHost, type Config, type WorkerSpec } from '../shared/config.js';
import { DATA_DIR_MODE } from '../shared/data-modes.js';
import { endSentence } from '../shared/errors.js';
import { membershipDigest, type MemberInfo } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { LockHeldError, ProcessLock } from '../shared/process-lock.js';
import { Pending } from './pending.js';
import { Persister, settledBy, type RoundResult } from './persister.js';
import { createWorkerServer, type WorkerServer } from './server.js';
import { createStore } from './store/create-store.js';
import { FileStore } from './store/files.js';
import { watchWorkerState } from './metrics.js';
import { walFolderBytes } from './wal-size.js';
import { WalAdopter, walLockName } from './wal-adopter.js';
import { replaySegments } from './wal-records.js';
import { Wal, dropSegments, listSegments } from './wal.js';

/** How long a starting worker waits for another worker to finish adopting its log. */
const ADOPTION_WAIT_MS = 60_000;
/**
 * What a stopping worker keeps of `kill_timeout` for itself: the rest is for persisting.
 * Winding down after the deadline (merges giving up, the unpersisted ids re-logged, locks
 * let go) took up to 1.3 s on a 2-core machine loaded by other processes, with 60,000
 * tenants pending: 1.5 s left too little room before the SIGKILL.
 */
const STOP_MARGIN_MS = 2000;
/** A stopping worker persists again after this pause while ids keep arriving (hand-overs from workers stopping with it). */
const FINAL_ROUND_PAUSE_MS = 50;
/** How long a restarted worker waits to learn the membership before persisting what its log kept anyway. */
const MEMBERSHIP_WAIT_MS = 3000;
/** How long requests still under way get once the worker has persisted and let go of its locks. */
const EXIT_GRACE_MS = 500;
/** Worker ids of workers on this machine's loopback (spawned ones, and loopback ones run by hand). */
const LOOPBACK_WORKER_ID = /^worker-\d+$/;

/** How a worker was started and what it was told: by the coordinator over IPC, or by hand (standalone.ts). */
export interface WorkerRunOptions {
  readonly config: Config;
  readonly spec: WorkerSpec;
  /** The address to listen on. */
  readonly host: string;
  readonly secret: string;
  readonly members: readonly MemberInfo[];
  readonly log: Logger;
  /** Listening: tell whoever started it. */
  readonly onReady: (url: string) => void;
  /** It cannot listen (and exits 1). */
  readonly onFatal: (code: string, message: string) => void;
}

/** A running worker, as main.ts and standalone.ts drive it. */
export interface RunningWorker {
  /** The live workers of the cluster changed. */
  setMembers(members: readonly MemberInfo[]): void;
  /** A new config is in force (timings, durability; `database` and `store` stay as they were). */
  setConfig(config: Config): void;
  /** Stops gracefully (persist within kill_timeout), then exits the process. */
  exit(reason: string): Promise<void>;
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
        throw new Error(`${endSentence(`the write-ahead log of ${workerId} in ${database} is in use: ${err.message}`)} Is another CountApp cluster running on this database?`, { cause: err });
      }
      await sleep(100);
    }
  }
}

/**
 * A worker's life once it knows its config, name and secret. Start-up: hold its
 * write-ahead log (a process lock, for its whole life) before touching anything, replay
 * what a previous run left into memory, then listen and report ready. It stops gracefully
 * (persist within its time, then exit) on /kill, SIGINT or SIGTERM.
 */
export async function runWorker(options: WorkerRunOptions): Promise<RunningWorker> {
  const { spec, secret, log } = options;
  const workerId = spec.id;
  let config = options.config;
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
  const store = await createStore(() => config, { workerId, log, secret });
  let membership = membershipDigest(options.members);
  /** The workers the coordinator lists as live: the adopter does not probe their logs. */
  let memberIds = new Set(options.members.map((member) => member.id));
  store.setMembers(options.members);
  // A log's owner is proven gone by taking its lock, and these locks live on one machine
  // (one network namespace): only loopback workers adopt, and only loopback workers' logs.
  const adoptable = isLoopbackHost(spec.host) ? (id: string) => LOOPBACK_WORKER_ID.test(id) : () => false;
  const adopter = new WalAdopter({ database, walRoot, selfId: workerId, log, adoptable, live: (id) => memberIds.has(id) });
  persister = new Persister({ wal, pending, store, adopter, log, intervalMs: config.worker_persist * 1000, publishMs: config.worker_publish * 1000, phase: 0 });
  const rounds = persister;
  watchWorkerState({ pendingIds: () => pending.ids, walBytes: () => walFolderBytes(walFolder), lastPersistAt: () => rounds.lastRound?.at });

  let server: WorkerServer | undefined;
  let stopping: Promise<{ persisted: boolean; pending: number }> | undefined;
  /** Stop taking batches, persist within kill_timeout; idempotent. */
  const drain = (reason: string): Promise<{ persisted: boolean; pending: number }> => {
    stopping ??= (async () => {
      const stopBy = Date.now() + Math.max(500, config.kill_timeout * 1000 - STOP_MARGIN_MS);
      log.info(`stopping (${reason}): persisting`);
      store.windDown(stopBy);
      server?.beginShutdown();
      /** Ids other workers handed over meanwhile (they are stopping too) go into the store as well, while time allows. */
      const persistLeftovers = async (round: RoundResult): Promise<RoundResult> => {
        while (pending.ids > 0 && Date.now() < stopBy - FINAL_ROUND_PAUSE_MS) {
          await sleep(FINAL_ROUND_PAUSE_MS);
          round = await rounds.persistNow(stopBy);
        }
        return round;
      };
      let round = await persistLeftovers(await rounds.close(stopBy));
      // No hand-over is taken from here on: a worker still holding ids for this one's
      // tenants merges them itself once this one has let go of its shard locks (it retries
      // after a pause). If some came in after the last round (the log's current segment is
      // not empty), one more round persists them and drops their log segments, so a clean
      // stop leaves no log behind — while time allows; otherwise the log keeps them.
      if (server !== undefined) await settledBy(server.closeHandoffs(), stopBy);
      if ((pending.ids > 0 || wal.status().bytes > 0) && Date.now() < stopBy - FINAL_ROUND_PAUSE_MS) {
        round = await persistLeftovers(await rounds.persistNow(stopBy));
      }
      // Ids of hand-overs whose merge is still under way count as not persisted: it fails at the deadline.
      const unpersisted = pending.ids + rounds.persistingIds();
      const persisted = round.ok && unpersisted === 0;
      if (!persisted) {
        log.warn(`stopping with ${unpersisted} id(s) not yet persisted: they stay in the write-ahead log ${walFolder} and are persisted at the next start (or by another worker)`);
      }
      return { persisted, pending: unpersisted };
    })();
    return stopping;
  };
  let exiting = false;
  const exit = async (reason: string): Promise<void> => {
    if (exiting) return;
    exiting = true;
    const { persisted } = await drain(reason);
    // The shard locks (or the Redis connection) first: whatever happens next, a stop never leaves one behind.
    await store.close().catch((err: unknown) => log.error('could not close the store', err));
    await wal.close();
    // Anything logged after the last round (or not persisted) keeps the log, and the line says so.
    let logGone = false;
    if (persisted && pending.ids === 0) {
      const left = await listSegments(walFolder).catch(() => [0, 0]);
      if (left.length <= 1 && wal.status().bytes === 0) {
        await dropSegments(walFolder, left).catch(() => {});
        logGone = await rmdir(walFolder).then(() => true, () => false);
      }
    }
    await walLock.release();
    log.info(logGone ? 'stopped; everything persisted' : `stopped; the write-ahead log ${walFolder} keeps what is not persisted yet (persisted at the next start)`);
    // Requests still under way can no longer be logged: a moment to answer them, no more.
    await server?.close(EXIT_GRACE_MS);
    process.exit(0);
  };

  // What the last run left is persisted now rather than a whole interval later — once this
  // worker knows the membership (the coordinator sends it as soon as this one is live), so
  // the ids go to the workers that write their tenants' files.
  let recovered = leftover.length > 0;
  const persistRecovered = (): void => {
    if (!recovered) return;
    recovered = false;
    rounds.persistNow().catch((err: unknown) => log.error('persisting the recovered ids failed; the next round retries', err));
  };
  const setMembers = (members: readonly MemberInfo[]): void => {
    membership = membershipDigest(members);
    memberIds = new Set(members.map((member) => member.id));
    store.setMembers(members);
    if (members.some((member) => member.id === workerId)) persistRecovered();
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
      persisting: rounds.persistingIds(),
      wal: wal.status(),
      walBytes: walFolderBytes(walFolder),
      lastPersist: rounds.lastRound,
      store: store.status(),
      membership,
    }),
    onKill: () => drain('asked by the coordinator'),
    onKilled: () => { void exit('asked by the coordinator'); },
    onMembers: setMembers,
  });
  try {
    await server.listen(spec.port, options.host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
    const message = code === 'EADDRINUSE' ? `port ${spec.port} is already in use by another program` : `cannot listen on ${options.host}:${spec.port} (${code})`;
    log.error(message, err);
    options.onFatal(code, message);
    await store.close().catch(() => {});
    await wal.close();
    await walLock.release();
    process.exit(1);
  }
  persister.start();
  if (recovered) setTimeout(persistRecovered, MEMBERSHIP_WAIT_MS).unref();
  log.info(`listening on ${options.host}:${spec.port} (durability: ${config.durability}, persist every ${config.worker_persist} s, store: ${store.kind})`);
  options.onReady(spec.url);

  process.on('SIGINT', () => { void exit('SIGINT'); });
  process.on('SIGTERM', () => { void exit('SIGTERM'); });
  return {
    setMembers,
    setConfig: (next) => {
      config = { ...next, database: config.database, store: config.store };
      log.setLevel(config.log_level);
      rounds.setInterval(config.worker_persist * 1000);
      rounds.setPublishInterval(config.worker_publish * 1000);
      if (store instanceof FileStore) store.setStaleMs(config.lock_stale * 1000);
      wal.setDurability(config.durability);
    },
    exit,
  };
}
