import { constants, fstatSync, statSync } from 'node:fs';
import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Durability } from '../shared/config.js';
import { syncToDisk } from './fsync.js';
import { observeWalGroup } from './metrics.js';
import { DATA_DIR_MODE, DATA_FILE_MODE } from '../shared/data-modes.js';

/**
 * The worker's write-ahead log: why a 200 survives a SIGKILL. Every acknowledged batch
 * is one record — the batch's JSON text as the client sent it (`[...]`), or a map of
 * tenant → ids (`{...}`) handed over by another worker or re-logged after a failed
 * persist — on one line, written before the answer. Group commit: while one write (+
 * fdatasync) is on its way, the records that arrive wait together and go out as the
 * next single write, so one fsync covers them all.
 *
 * The log is cut into numbered segments. A persist round first `rotate()`s: new records
 * go to a fresh segment, and every record of the sealed ones is already applied in
 * memory. Once the round has made all of it durable elsewhere, the sealed segments are
 * deleted (`dropThrough`). A crash anywhere leaves segments behind; the worker (or, if it
 * never comes back, another worker) replays them.
 *
 * A record is acknowledged only while its segment is still reachable by its path: after
 * each write the file is checked (it was not deleted, renamed, or its folder removed).
 * When it is not, the log is *lost*: every append fails (the client gets 503) until
 * `recover` has made a new segment holding everything not yet persisted.
 */

const SEGMENT = /^(\d{12})\.log$/;

export function segmentName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.log`;
}

/** The log's segment file is gone from its path: what was written there no longer counts. */
export class WalLostError extends Error {
  override name = 'WalLostError';
  readonly code = 'EWALLOST';
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  // A failed group must not crash the process as an unhandled rejection; its waiters still see it.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

interface Group {
  records: Buffer[];
  bytes: number;
  /** Run once the group is durable, before anything else happens (see `append`). */
  applies: (() => void)[];
  done: Deferred;
}

const NEWLINE = 0x0a;
const NEWLINE_BUFFER = Buffer.from('\n');

/** A record must be one line: newlines between JSON tokens become spaces (JSON strings cannot hold a raw newline). */
export function asRecord(json: Buffer | string): Buffer {
  const bytes = typeof json === 'string' ? Buffer.from(json, 'utf8') : json;
  if (bytes.indexOf(NEWLINE) === -1) return bytes;
  const copy = Buffer.from(bytes);
  for (let i = copy.indexOf(NEWLINE); i !== -1; i = copy.indexOf(NEWLINE, i + 1)) copy[i] = 0x20;
  return copy;
}

/** Segment numbers of a log folder, oldest first. */
export async function listSegments(folder: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.flatMap((name) => {
    const match = SEGMENT.exec(name);
    return match ? [Number(match[1])] : [];
  }).sort((a, b) => a - b);
}

/** Deletes the given segments. */
export async function dropSegments(folder: string, seqs: readonly number[]): Promise<void> {
  for (const seq of seqs) await rm(path.join(folder, segmentName(seq)), { force: true });
}

export interface WalOptions {
  readonly durability: Durability;
  /**
   * The records that hold everything this worker acknowledged and has not persisted yet,
   * for `recover` to write into a new segment once the old ones are lost.
   */
  readonly unpersisted: () => Buffer[];
}

/** What `status()` tells. */
export interface WalStatus {
  readonly segment: number;
  /** Bytes written to the current segment. */
  readonly bytes: number;
  readonly lost: boolean;
}

export class Wal {
  readonly #folder: string;
  readonly #unpersisted: () => Buffer[];
  #durability: Durability;
  #seq: number;
  #handle: FileHandle | undefined;
  /** The current segment was opened with O_DSYNC: each write returns once its data is on disk. */
  #dsync = false;
  /** Inode of the current segment, to tell whether its path still leads to it. */
  #ino = 0;
  /** Records waiting for the next write. */
  #open: Group | undefined;
  /** The group being written now. */
  #writing: Group | undefined;
  #rotations: Deferred[] = [];
  #rotationResult = -1;
  /** True while the write loop runs; cleared by the loop itself the moment it finds no work. */
  #active = false;
  #loopDone: Promise<void> = Promise.resolve();
  /** A write failed part-way: the next one starts with "\n" so it is not glued to the torn line. */
  #tornTail = false;
  #closed = false;
  /** Bytes written to the current segment: an empty one needs no rotation. */
  #segmentBytes = 0;
  /** Set when the segment's path stopped leading to it; appends fail until recover() succeeds. */
  #lost: WalLostError | undefined;

  private constructor(folder: string, options: WalOptions, seq: number) {
    this.#folder = folder;
    this.#durability = options.durability;
    this.#unpersisted = options.unpersisted;
    this.#seq = seq;
  }

  /**
   * Opens the log in `folder`, after the segments already there (the caller replays
   * those, then drops them once persisted).
   */
  static async open(folder: string, options: WalOptions): Promise<Wal> {
    await mkdir(folder, { recursive: true, mode: DATA_DIR_MODE });
    const existing = await listSegments(folder);
    const wal = new Wal(folder, options, (existing.at(-1) ?? 0) + 1);
    await wal.#openSegment();
    return wal;
  }

  get folder(): string {
    return this.#folder;
  }

  setDurability(durability: Durability): void {
    this.#durability = durability;
  }

  /** True while the log is lost (see the class comment). */
  get lost(): boolean {
    return this.#lost !== undefined;
  }

  /**
   * True when the log is lost, looking at the current segment's path first: a log deleted
   * (rm -rf of the database) while no batch arrives would otherwise be found out only by
   * the next append, and until then the folder and what the store held stay gone. Looks
   * only while no write is under way (a write checks for itself once it is done).
   */
  probeLost(): boolean {
    if (this.#lost === undefined && !this.#closed && !this.#active && this.#handle !== undefined && !this.#reachable()) this.#markLost();
    return this.#lost !== undefined;
  }

  /** From now on appends are refused until recover() succeeds. */
  #markLost(): WalLostError {
    this.#lost = new WalLostError(`the write-ahead log segment ${path.join(this.#folder, segmentName(this.#seq))} was deleted or moved`);
    return this.#lost;
  }

  status(): WalStatus {
    return { segment: this.#seq, bytes: this.#segmentBytes, lost: this.#lost !== undefined };
  }

  async #openSegment(): Promise<void> {
    // O_NOFOLLOW: a segment path replaced by a symlink is an error, never followed.
    // O_DSYNC with durability fsync: a write is durable when it returns, one trip through
    // the thread pool per group instead of two (write, then fdatasync); each trip wakes a
    // pool thread, which costs the event loop more than the call itself (1-item batches,
    // 4 workers: a fifth of a worker's main-thread samples were in those two calls).
    const dsync = this.#durability === 'fsync';
    const handle = await open(path.join(this.#folder, segmentName(this.#seq)), constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | (dsync ? constants.O_DSYNC : 0), DATA_FILE_MODE);
    try {
      if (this.#durability === 'fsync') await syncToDisk(this.#folder, 'folder');
      this.#ino = fstatSync(handle.fd).ino;
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
    this.#handle = handle;
    this.#dsync = dsync;
  }

  /** Whether the current segment's path still leads to the file we write (not deleted, renamed, or its folder gone). */
  #reachable(): boolean {
    const handle = this.#handle;
    if (handle === undefined) return false;
    try {
      if (fstatSync(handle.fd).nlink === 0) return false;
      const info = statSync(path.join(this.#folder, segmentName(this.#seq)), { throwIfNoEntry: false });
      return info !== undefined && info.ino === this.#ino;
    } catch {
      return false; // ENOTDIR (the folder replaced by a file), EACCES...: not where we left it
    }
  }

  /**
   * Logs one record, then calls `apply` (which makes its ids pending or merges them) and
   * resolves, once it is durable as `durability` says: after fdatasync (`fsync`), after
   * write (`write`: survives a killed process, not a power cut), or at once (`off`: like the
   * original, a crash loses it). `apply` runs inside the write loop, before a rotation can
   * seal the segment, so every record of a sealed segment is applied in memory when the
   * persist round that deletes the segment starts. If the write fails (or the segment
   * turns out unreachable), `apply` never runs and the promise rejects: nothing counts.
   */
  append(record: Buffer, apply: () => void): Promise<void> {
    if (this.#durability === 'off') {
      apply();
      return Promise.resolve();
    }
    if (this.#closed) return Promise.reject(new Error('the write-ahead log is closed'));
    if (this.#lost !== undefined) return Promise.reject(this.#lost);
    this.#open ??= { records: [], bytes: 0, applies: [], done: deferred() };
    this.#open.records.push(record, NEWLINE_BUFFER);
    this.#open.bytes += record.length + 1;
    this.#open.applies.push(apply);
    const { promise } = this.#open.done;
    this.#drive();
    return promise;
  }

  /**
   * Seals the current segment: later appends go to the next one. Resolves with the
   * sealed segment's number once no write to it is under way any more.
   */
  rotate(): Promise<number> {
    if (this.#segmentBytes === 0 && this.#open === undefined && this.#writing === undefined) return Promise.resolve(this.#seq - 1);
    const waiter = deferred();
    this.#rotations.push(waiter);
    this.#drive();
    return waiter.promise.then(() => this.#rotationResult);
  }

  /** Deletes every segment up to and including `seq` (what they hold is persisted now). */
  async dropThrough(seq: number): Promise<void> {
    const seqs = (await listSegments(this.#folder)).filter((s) => s <= seq && s !== this.#seq);
    await dropSegments(this.#folder, seqs);
  }

  /**
   * After the log was lost: recreates the folder, opens a new segment and writes into it
   * everything acknowledged and not yet persisted (`unpersisted`), durably. Appends work
   * again once it resolves. Throws (and the log stays lost) while the disk refuses.
   */
  async recover(): Promise<void> {
    if (this.#lost === undefined || this.#closed) return;
    await this.#loopDone;
    await mkdir(this.#folder, { recursive: true, mode: DATA_DIR_MODE });
    const old = this.#handle;
    this.#handle = undefined;
    await old?.close().catch(() => {});
    this.#seq = Math.max(this.#seq, ...(await listSegments(this.#folder))) + 1;
    await this.#openSegment();
    const records = this.#unpersisted();
    const handle = this.#handle as FileHandle | undefined;
    if (handle === undefined) throw new Error('the write-ahead log could not be reopened');
    if (records.length > 0) {
      const text = Buffer.concat(records.flatMap((record) => [record, NEWLINE_BUFFER]));
      await handle.appendFile(text);
      this.#segmentBytes = text.length;
      if (this.#durability === 'fsync') await handle.datasync();
    } else {
      this.#segmentBytes = 0;
    }
    if (!this.#reachable()) throw new WalLostError(`the write-ahead log segment ${path.join(this.#folder, segmentName(this.#seq))} vanished again while it was being recreated`);
    this.#tornTail = false;
    this.#lost = undefined;
  }

  /** Closes the current segment; appends are refused from now on. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#loopDone;
    await this.#handle?.close().catch(() => {});
    this.#handle = undefined;
  }

  #drive(): void {
    if (this.#active) return;
    this.#active = true;
    // The first write starts once this turn of the event loop has read all it could: every
    // batch parsed in the turn joins one group (one write + fdatasync) instead of the first
    // one going alone and the rest waiting for its fdatasync. With 4 workers under load:
    // 1.57 batches per fdatasync before, 1.77 after.
    this.#loopDone = nextTurn().then(() => this.#loop()).catch(() => { this.#active = false; });
  }

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#rotations.length > 0) {
        const waiters = this.#rotations.splice(0);
        const sealed = this.#seq;
        const old = this.#handle;
        try {
          if (this.#lost !== undefined) throw this.#lost;
          this.#seq = sealed + 1;
          await this.#openSegment();
        } catch (err) {
          // Keep writing to the old segment; the round will not drop anything.
          this.#seq = sealed;
          this.#handle = old;
          for (const waiter of waiters) waiter.reject(err);
          continue;
        }
        this.#segmentBytes = 0;
        await old?.close().catch(() => {});
        this.#rotationResult = sealed;
        for (const waiter of waiters) waiter.resolve();
        continue;
      }
      const group = this.#open;
      if (group === undefined) {
        this.#active = false;
        return;
      }
      this.#open = undefined;
      this.#writing = group;
      try {
        if (this.#lost !== undefined) throw this.#lost;
        const handle = this.#handle;
        if (handle === undefined) throw new Error('the write-ahead log is closed');
        const parts = this.#tornTail ? [NEWLINE_BUFFER, ...group.records] : group.records;
        const text = Buffer.concat(parts, group.bytes + (this.#tornTail ? 1 : 0));
        this.#tornTail = true;
        this.#segmentBytes += text.length;
        const fsync = this.#durability === 'fsync';
        const writeStarted = performance.now();
        await handle.appendFile(text);
        this.#tornTail = false;
        // A segment opened before durability became fsync is synced by hand until the next rotation.
        const syncStarted = fsync && !this.#dsync ? performance.now() : undefined;
        if (syncStarted !== undefined) await handle.datasync();
        observeWalGroup(group.applies.length, fsync ? performance.now() - (syncStarted ?? writeStarted) : undefined);
        if (!this.#reachable()) throw this.#markLost();
        for (const apply of group.applies) apply();
        group.done.resolve();
      } catch (err) {
        group.done.reject(err);
      } finally {
        this.#writing = undefined;
      }
    }
  }
}
