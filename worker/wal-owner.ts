import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LockBusyError, acquireLock, type Lock } from '../shared/locks.js';
import type { Logger } from '../shared/log.js';
import type { TenantStore } from './tenant-store.js';
import { dropSegments, listSegments, readSegments } from './wal.js';

/**
 * Who owns a write-ahead log folder (`<database>/.wal/<worker-id>/`). The owner writes
 * its pid (and the process start time, so a reused pid is not mistaken for it) to
 * `owner.json`. Any worker may adopt the folder of an owner that is not running — one
 * removed from the config after a SIGKILL, or never respawned — and replay it into the
 * tenant files. The folder's lock (`<worker-id>.owner.lock`) keeps two adopters, or an
 * adopter and a returning owner, from working on it at once.
 */

interface OwnerRecord {
  readonly pid: number;
  readonly start: string | null;
}

const OWNER_FILE = 'owner.json';

/** Start time of a process in clock ticks since boot, from /proc (null where there is no /proc). */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may hold spaces and parentheses, so count after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function isRunning(owner: OwnerRecord): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return owner.start === null || processStart(owner.pid) === owner.start;
}

async function readOwner(folder: string): Promise<OwnerRecord | null> {
  try {
    const value = JSON.parse(await readFile(path.join(folder, OWNER_FILE), 'utf8')) as Partial<OwnerRecord>;
    return typeof value.pid === 'number' ? { pid: value.pid, start: value.start ?? null } : null;
  } catch {
    return null;
  }
}

function ownerLockTarget(walRoot: string, workerId: string): string {
  return path.join(walRoot, `${workerId}.owner`);
}

/**
 * Makes this process the owner of its log folder. Waits while an adopter is replaying
 * the folder (bounded by `timeoutMs`): the worker must not start on a log someone else is
 * emptying.
 */
export async function claimWal(walRoot: string, workerId: string, staleMs: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let lock: Lock;
    try {
      lock = await acquireLock(ownerLockTarget(walRoot, workerId), staleMs);
    } catch (err) {
      if (err instanceof LockBusyError && Date.now() < deadline) continue;
      throw err;
    }
    try {
      await mkdir(path.join(walRoot, workerId), { recursive: true });
      const record: OwnerRecord = { pid: process.pid, start: processStart(process.pid) };
      await writeFile(path.join(walRoot, workerId, OWNER_FILE), JSON.stringify(record));
      return;
    } finally {
      await lock.release();
    }
  }
}

/**
 * After a clean shutdown — every logged pair is in the tenant files — delete the log,
 * the owner record and the folder.
 */
export async function releaseWal(walRoot: string, workerId: string): Promise<void> {
  const folder = path.join(walRoot, workerId);
  await dropSegments(folder, await listSegments(folder));
  await rm(path.join(folder, OWNER_FILE), { force: true });
  await rmdir(folder).catch(() => {});
}

/** A log folder taken over for one persist round. */
export interface Adoption {
  readonly workerId: string;
  readonly pairs: number;
  /** After the round: on success delete the replayed segments (and the folder); always unlock. */
  finish(persisted: boolean): Promise<void>;
}

/** Finds log folders whose owner is gone and hands their pairs to this worker's store. */
export class WalAdopter {
  readonly #walRoot: string;
  readonly #selfId: string;
  readonly #staleMs: number;
  readonly #log: Logger;

  constructor(options: { walRoot: string; selfId: string; staleMs: number; log: Logger }) {
    this.#walRoot = options.walRoot;
    this.#selfId = options.selfId;
    this.#staleMs = options.staleMs;
    this.#log = options.log;
  }

  /**
   * Locks every orphaned folder (skipping any another worker is already on), replays its
   * segments into `store` as pending ids, and returns the adoptions to finish after the round.
   */
  async adopt(store: TenantStore): Promise<Adoption[]> {
    let names: string[];
    try {
      names = await readdir(this.#walRoot);
    } catch {
      return [];
    }
    const adoptions: Adoption[] = [];
    for (const workerId of names) {
      if (workerId === this.#selfId || workerId.endsWith('.lock')) continue;
      const folder = path.join(this.#walRoot, workerId);
      const owner = await readOwner(folder);
      if (owner !== null && isRunning(owner)) continue;
      const adoption = await this.#adoptOne(workerId, folder, store).catch((err: unknown) => {
        this.#log.error(`could not adopt the write-ahead log of ${workerId}; will retry`, err);
        return null;
      });
      if (adoption !== null) adoptions.push(adoption);
    }
    return adoptions;
  }

  async #adoptOne(workerId: string, folder: string, store: TenantStore): Promise<Adoption | null> {
    let lock: Lock;
    try {
      lock = await acquireLock(ownerLockTarget(this.#walRoot, workerId), this.#staleMs, { wait: false });
    } catch (err) {
      if (err instanceof LockBusyError) return null;
      throw err;
    }
    try {
      // Checked again under the lock: the owner may have come back meanwhile.
      const owner = await readOwner(folder);
      if (owner !== null && isRunning(owner)) {
        await lock.release();
        return null;
      }
      const seqs = await listSegments(folder);
      const { pairs, badLines } = await readSegments(folder, seqs);
      const added = store.addPairs(pairs);
      if (seqs.length > 0) {
        this.#log.info(`adopted the write-ahead log of ${workerId} (not running): ${pairs.length / 2} pairs in ${seqs.length} segment(s), ${added} new here${badLines ? `, ${badLines} torn line(s) skipped` : ''}`);
      }
      return {
        workerId,
        pairs: pairs.length / 2,
        finish: async (persisted: boolean) => {
          try {
            if (persisted) {
              await dropSegments(folder, seqs);
              if ((await listSegments(folder)).length === 0) {
                await rm(path.join(folder, OWNER_FILE), { force: true });
                await rmdir(folder).catch(() => {});
              }
            }
          } finally {
            await lock.release();
          }
        },
      };
    } catch (err) {
      await lock.release();
      throw err;
    }
  }
}
