import { readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../shared/log.js';
import { ProcessLock } from '../shared/process-lock.js';
import { Pending } from './pending.js';
import type { IdMap } from './store/id-map.js';
import { dropSegments, listSegments } from './wal.js';
import { replaySegments } from './wal-records.js';

/** The process lock a worker holds on its write-ahead log for its whole life (see ProcessLock). */
export function walLockName(workerId: string): string {
  return `wal-${workerId}`;
}

/** A log folder taken over for one persist round. */
export interface Adoption {
  readonly workerId: string;
  /** Its ids, to persist with the round. */
  readonly ids: IdMap;
  /** After the round: when its ids are safe (persisted, or re-logged here), delete its segments and folder; always let the lock go. */
  finish(safe: boolean): Promise<void>;
}

/**
 * Finds write-ahead logs whose worker is not running — removed from the config after a
 * SIGKILL, or never respawned — and hands their ids to this worker's persist round.
 * "Not running" is proven, never guessed: a worker holds the process lock of its own log
 * for as long as it lives (the kernel frees it when the process dies), so taking that lock
 * is the proof, and holding it keeps the owner (should it come back) and other adopters
 * out until the round is done. Nothing in the folder decides it: no pid file that a crash
 * or a hand could empty.
 */
export class WalAdopter {
  readonly #database: string;
  readonly #walRoot: string;
  readonly #selfId: string;
  readonly #log: Logger;
  readonly #adoptable: (workerId: string) => boolean;
  readonly #live: (workerId: string) => boolean;

  /**
   * `adoptable` says which workers' logs this one may take over: the proof that an owner
   * is gone is a lock of this machine, so a log written by a worker on another host
   * (a database folder shared over the network) must never be adopted here. @default all
   *
   * `live` says which workers the coordinator last listed as live (the membership): their
   * logs are not probed. A probe of a running worker's lock only finds it held, and costs
   * both processes a socket each round — with every worker probing every other one, 56
   * probes per round at 8 workers, about half of an idle worker's CPU. It decides nothing:
   * a worker that dies leaves the membership as soon as the coordinator sees it, and its
   * log is probed (and adopted, if its lock is free) from the next round on. @default none
   */
  constructor(options: { database: string; walRoot: string; selfId: string; log: Logger; adoptable?: (workerId: string) => boolean; live?: (workerId: string) => boolean }) {
    this.#database = options.database;
    this.#walRoot = options.walRoot;
    this.#selfId = options.selfId;
    this.#log = options.log;
    this.#adoptable = options.adoptable ?? (() => true);
    this.#live = options.live ?? (() => false);
  }

  async adopt(): Promise<Adoption[]> {
    let names: string[];
    try {
      names = await readdir(this.#walRoot);
    } catch {
      return [];
    }
    const adoptions: Adoption[] = [];
    for (const workerId of names) {
      if (workerId === this.#selfId || workerId.endsWith('.lock') || !this.#adoptable(workerId) || this.#live(workerId)) continue;
      const lock = await ProcessLock.tryAcquire(this.#database, walLockName(workerId), { pid: process.pid, role: 'adopting', detail: `by ${this.#selfId}` }).catch((err: unknown) => {
        this.#log.error(`could not check whether the write-ahead log of ${workerId} has a running owner`, err);
        return undefined;
      });
      if (lock === undefined) continue; // its worker runs (or another worker is adopting it)
      try {
        adoptions.push(await this.#adoptOne(workerId, lock));
      } catch (err) {
        await lock.release();
        this.#log.error(`could not adopt the write-ahead log of ${workerId}; will retry next round`, err);
      }
    }
    return adoptions;
  }

  async #adoptOne(workerId: string, lock: ProcessLock): Promise<Adoption> {
    const folder = path.join(this.#walRoot, workerId);
    const seqs = await listSegments(folder);
    const pending = new Pending();
    const { records, badLines } = await replaySegments(folder, seqs, pending);
    if (seqs.length > 0) {
      this.#log.info(`adopted the write-ahead log of ${workerId} (not running): ${pending.ids} id(s) in ${records} record(s) of ${seqs.length} segment(s)${badLines ? `, ${badLines} torn line(s) skipped` : ''}`);
    }
    return {
      workerId,
      ids: pending.take(),
      finish: async (safe: boolean) => {
        try {
          if (safe) {
            await dropSegments(folder, seqs);
            if ((await listSegments(folder)).length === 0) {
              await rm(path.join(folder, 'owner.json'), { force: true }); // left by earlier versions
              await rmdir(folder).catch(() => {});
            }
          }
        } finally {
          await lock.release();
        }
      },
    };
  }
}
