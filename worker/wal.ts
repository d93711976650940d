import { mkdir, open, readFile, readdir, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Durability } from '../shared/config.js';
import { syncToDisk } from './fsync.js';

/**
 * The worker's write-ahead log: why a 200 survives a SIGKILL. Every batch's new pairs
 * are appended as one JSON line before the batch is acknowledged. Group commit: while
 * one write (+ fdatasync) is on its way, the batches that arrive wait together and go
 * out as the next single write, so one fsync covers them all.
 *
 * The log is cut into numbered segments. A persist round first `rotate()`s: from then
 * on new batches go to a fresh segment, and every pair of the sealed ones is already in
 * memory as pending. Once the round has put every pending id into the tenant files, the
 * sealed segments are deleted (`dropThrough`). A crash anywhere leaves segments behind,
 * and the worker (or, if it never comes back, another worker) replays them.
 */

const SEGMENT = /^(\d{12})\.log$/;

function segmentName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.log`;
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
  lines: string[];
  /** Run once the group is durable, before anything else happens (see `append`). */
  applies: (() => void)[];
  done: Deferred;
}

/** Segment files of a log folder, oldest first. */
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

/**
 * Reads every complete record of the given segments: flattened [tenant, id, ...] pairs.
 * A torn last line (the writer died mid-write, so it was never acknowledged) is skipped.
 */
export async function readSegments(folder: string, seqs: readonly number[]): Promise<{ pairs: string[]; badLines: number }> {
  const pairs: string[] = [];
  let badLines = 0;
  for (const seq of seqs) {
    const text = await readFile(path.join(folder, segmentName(seq)), 'utf8');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const record: unknown = JSON.parse(line);
        if (!Array.isArray(record)) throw new Error('not an array');
        for (let i = 0; i + 1 < record.length; i += 2) {
          if (typeof record[i] === 'string' && typeof record[i + 1] === 'string') pairs.push(record[i], record[i + 1]);
        }
      } catch {
        badLines++;
      }
    }
  }
  return { pairs, badLines };
}

/** Deletes the segments numbered up to `seq`. */
export async function dropSegments(folder: string, seqs: readonly number[]): Promise<void> {
  for (const seq of seqs) await rm(path.join(folder, segmentName(seq)), { force: true });
}

export class Wal {
  readonly #folder: string;
  #durability: Durability;
  #seq: number;
  #handle: FileHandle | undefined;
  /** Batches waiting for the next write. */
  #open: Group | undefined;
  /** The batch group being written now. */
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

  private constructor(folder: string, durability: Durability, seq: number) {
    this.#folder = folder;
    this.#durability = durability;
    this.#seq = seq;
  }

  /**
   * Opens the log in `folder`, after the segments already there (the caller replays
   * those with `readSegments`, then drops them once persisted).
   */
  static async open(folder: string, durability: Durability): Promise<Wal> {
    await mkdir(folder, { recursive: true });
    const existing = await listSegments(folder);
    const wal = new Wal(folder, durability, (existing.at(-1) ?? 0) + 1);
    await wal.#openSegment();
    return wal;
  }

  setDurability(durability: Durability): void {
    this.#durability = durability;
  }

  async #openSegment(): Promise<void> {
    const handle = await open(path.join(this.#folder, segmentName(this.#seq)), 'a');
    if (this.#durability === 'fsync') await syncToDisk(this.#folder, 'folder');
    this.#handle = handle;
  }

  /**
   * Logs one batch's new pairs, then calls `apply` (which counts them) and resolves, once
   * they are durable as `durability` says: after fdatasync (`fsync`), after write
   * (`write`: survives a killed process, not a power cut), or at once (`off`: like the
   * original, a crash loses the batch). `apply` runs inside the write loop, before a
   * rotation can seal the segment, so every pair of a sealed segment is already pending
   * in memory when the persist round that deletes the segment takes its snapshot. If the
   * write fails, `apply` never runs and the promise rejects: nothing of the batch counts.
   */
  append(pairs: readonly string[], apply: () => void): Promise<void> {
    if (this.#durability === 'off' || pairs.length === 0) {
      // Nothing new to log (every pair is counted, so already durable), or no log at all.
      apply();
      return Promise.resolve();
    }
    if (this.#closed) return Promise.reject(new Error('the write-ahead log is closed'));
    this.#open ??= { lines: [], applies: [], done: deferred() };
    this.#open.lines.push(JSON.stringify(pairs));
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

  /** Deletes every segment up to and including `seq` (its pairs are in the tenant files now). */
  async dropThrough(seq: number): Promise<void> {
    const seqs = (await listSegments(this.#folder)).filter((s) => s <= seq && s !== this.#seq);
    await dropSegments(this.#folder, seqs);
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
    this.#loopDone = this.#loop().catch(() => { this.#active = false; });
  }

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#rotations.length > 0) {
        const waiters = this.#rotations.splice(0);
        const sealed = this.#seq;
        const old = this.#handle;
        try {
          this.#seq = sealed + 1;
          await this.#openSegment();
        } catch (err) {
          // Keep writing to the old segment; the round will not drop anything.
          this.#seq = sealed;
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
        const handle = this.#handle;
        if (handle === undefined) throw new Error('the write-ahead log is closed');
        const text = `${this.#tornTail ? '\n' : ''}${group.lines.join('\n')}\n`;
        this.#tornTail = true;
        this.#segmentBytes += text.length;
        await handle.appendFile(text);
        this.#tornTail = false;
        if (this.#durability === 'fsync') await handle.datasync();
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
