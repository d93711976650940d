import { closeSync, constants, fstatSync, lstatSync, openSync, writeSync, type Stats } from 'node:fs';
import { DATA_FILE_MODE } from '../../shared/data-modes.js';
import { completeLength } from '../../shared/json-lines.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import type { Logger } from '../../shared/log.js';
import { IdSet } from './id-set.js';
import { encodeAppend, encodeHeader, parseTenantLines, readCountAtEnd, readRange } from './tenant-file-format.js';

/** A tenant file that is not a regular file (a directory, a symlink...): that tenant cannot be read or written until someone moves it away. */
export class TenantFileError extends Error {
  override name = 'TenantFileError';
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.file = file;
  }
}

/** A tenant whose ids this worker holds because it writes the tenant's file (it owns the tenant's shard). */
interface Loaded {
  readonly ids: IdSet;
  /** Identity of the file the ids were read from (see identityOf); '' before the file exists. */
  identity: string;
  /** Bytes read and parsed: always just after a "\n". */
  consumed: number;
  /** File size when last looked at (more than `consumed` behind a torn line; NaN: look again). */
  seen: number;
}

interface CachedCount {
  readonly identity: string;
  readonly size: number;
  readonly count: number;
}

/** Counts of files remembered by (inode, size): a count query on an unchanged file costs one lstat. */
const MAX_CACHED_COUNTS = 100_000;
const OPEN_READ = constants.O_RDONLY | constants.O_NOFOLLOW;
/** The identity of a tenant whose file must be read afresh (see distrust): matches no file, and is not '' (no file yet). */
const DISTRUSTED = 'distrusted';
const OPEN_APPEND = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;

/**
 * What tells one file from another at the same path: the inode number alone is reused at
 * once when a file is deleted and another created, so its birth time goes with it.
 */
function identityOf(info: Stats): string {
  return `${info.ino}:${info.birthtimeMs}`;
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/**
 * The tenant files of one database, as one worker reads and writes them. Every call is
 * synchronous on purpose: a count is one lstat (plus a read of the file's last bytes when
 * it changed), far cheaper than a trip through the thread pool, where it would queue
 * behind fsyncs; and a merge runs under its shard lock with nothing else interleaved, so
 * "read what others appended, then append" cannot be split by another writer of this
 * process. Links are never followed: a tenant path that is a symlink is refused, so no
 * file outside `database` is ever read or written.
 */
export class TenantFiles {
  readonly #database: string;
  readonly #log: Logger;
  readonly #loaded = new Map<string, Loaded>();
  readonly #counts = new Map<string, CachedCount>();
  /** Files appended to since the last `takeUnsynced()`, and whether one of them is new. */
  #unsynced = new Set<string>();
  #folderUnsynced = false;

  constructor(database: string, log: Logger) {
    this.#database = database;
    this.#log = log;
  }

  pathOf(tenant: string): string {
    return tenantFilePath(this.#database, tenant);
  }

  /** Tenants whose ids are held, and how many ids that is. */
  held(): { tenants: number; ids: number } {
    let ids = 0;
    for (const tenant of this.#loaded.values()) ids += tenant.ids.size;
    return { tenants: this.#loaded.size, ids };
  }

  /** Stops holding the ids of tenants this worker no longer writes (it reads them again if it ever does). */
  forget(keep: (tenant: string) => boolean): number {
    let dropped = 0;
    for (const name of this.#loaded.keys()) {
      if (!keep(name)) {
        this.#loaded.delete(name);
        dropped++;
      }
    }
    return dropped;
  }

  /**
   * Tenants whose files another process may have written while this one believed it held
   * their lock (it was taken over): each is read afresh at its next merge, and ids held
   * here but missing from the file are written back — never forgotten, as the file may be
   * gone (deleted with the lock) and these ids the only copy left.
   */
  distrust(which: (tenant: string) => boolean): void {
    for (const [name, tenant] of this.#loaded) if (which(name)) tenant.identity = DISTRUSTED;
  }

  /** Tenants held whose file is no longer the one their ids were read from (deleted, replaced). */
  vanished(): string[] {
    const names: string[] = [];
    for (const [name, tenant] of this.#loaded) {
      if (tenant.ids.size === 0) continue;
      const info = this.#lstat(name);
      if (info === undefined || identityOf(info) !== tenant.identity || info.size < tenant.seen) names.push(name);
    }
    return names;
  }

  #lstat(tenant: string): Stats | undefined {
    const file = this.pathOf(tenant);
    const info = lstatSync(file, { throwIfNoEntry: false });
    if (info !== undefined && !info.isFile()) {
      throw new TenantFileError(file, `${file} is ${kindOf(info)}, not a regular file: tenant ${JSON.stringify(tenant.slice(0, 80))} cannot be read or persisted until it is moved away`);
    }
    return info;
  }

  /**
   * The tenant's distinct count, as its file states it now. Every worker answers from the
   * same file, which only grows, so a later answer is never smaller than an earlier one.
   */
  count(tenant: string): number {
    const info = this.#lstat(tenant);
    const loaded = this.#loaded.get(tenant);
    if (info === undefined) return loaded?.ids.size ?? 0; // deleted under us: our own ids until it is rewritten
    const id = identityOf(info);
    if (loaded !== undefined && loaded.identity === id && loaded.seen === info.size && loaded.consumed === info.size) return loaded.ids.size;
    const cached = this.#counts.get(tenant);
    if (cached !== undefined && cached.identity === id && cached.size === info.size) return cached.count;
    const file = this.pathOf(tenant);
    const fd = this.#open(file, OPEN_READ);
    try {
      const now = fstatSync(fd);
      let { count } = readCountAtEnd(fd, now.size);
      // A file of an earlier version: its lines carry no count, so count its ids once.
      count ??= new Set(parseTenantLines(readRange(fd, 0, now.size).toString('utf8')).ids).size;
      if (this.#counts.size >= MAX_CACHED_COUNTS) this.#counts.delete(this.#counts.keys().next().value!);
      this.#counts.set(tenant, { identity: identityOf(now), size: now.size, count });
      return count;
    } finally {
      closeSync(fd);
    }
  }

  #open(file: string, flags: number): number {
    try {
      return openSync(file, flags, DATA_FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
        throw new TenantFileError(file, `${file} is a symbolic link: refused, tenant files are never followed outside the database folder`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * Appends to the tenant's file the ids of `ids` it does not have yet, with the new
   * count; the caller holds the tenant's shard lock. First takes in whatever other writers
   * appended since this worker last looked (so nothing is written twice and the count stays
   * exact), and rewrites its ids into a new file if the file was deleted or replaced.
   * Returns how many ids were new. On failure nothing is taken as written.
   */
  mergeLocked(tenant: string, ids: readonly string[]): number {
    const file = this.pathOf(tenant);
    const info = this.#lstat(tenant);
    let loaded = this.#loaded.get(tenant);
    // Nothing to add to a tenant not held here: no need to read its file (a strong read's no-op).
    if (loaded === undefined && ids.length === 0) return 0;
    let carried: string[] = [];
    if (loaded === undefined) {
      loaded = this.#load(file, info);
      this.#loaded.set(tenant, loaded);
    } else if (info === undefined ? loaded.identity !== '' : identityOf(info) !== loaded.identity || info.size < loaded.seen) {
      // Deleted or replaced by hand: what we held must be in the new file too.
      const fresh = this.#load(file, info);
      for (const id of loaded.ids) if (!fresh.ids.has(id)) carried.push(id);
      if (carried.length > 0) this.#log.warn(`tenant file ${file} was ${info === undefined ? 'deleted' : 'replaced'}: writing back the ${carried.length} id(s) this worker held`);
      loaded = fresh;
      this.#loaded.set(tenant, loaded);
    } else if (info !== undefined && info.size !== loaded.seen) {
      this.#catchUp(file, loaded);
    }
    if (carried.length === 0 && ids.length === 0) return 0;

    const set = loaded.ids;
    const heldBefore = set.size;
    const fresh: string[] = [];
    for (const id of carried) {
      set.add(id);
      fresh.push(id);
    }
    for (const id of ids) if (set.add(id)) fresh.push(id);
    if (fresh.length === 0) return 0;
    try {
      // Where our append starts: the file's size as just read (nobody else writes: we hold the lock).
      const size = loaded.seen;
      const head = size === 0 ? encodeHeader(tenant) : loaded.seen > loaded.consumed ? '\n' : '';
      const data = Buffer.from(`${head}${encodeAppend(fresh, set.size)}`, 'utf8');
      const fd = this.#open(file, OPEN_APPEND);
      try {
        let written = 0;
        while (written < data.length) written += writeSync(fd, data, written, data.length - written);
        if (size === 0) {
          loaded.identity = identityOf(fstatSync(fd));
          this.#folderUnsynced = true;
        }
      } finally {
        closeSync(fd);
      }
      loaded.consumed = loaded.seen = size + data.length;
    } catch (err) {
      set.truncate(heldBefore);
      loaded.seen = Number.NaN; // part of the line may be there: read the file again next time
      throw err;
    }
    this.#unsynced.add(file);
    return fresh.length;
  }

  /** Reads a whole tenant file into a new set (empty when there is no file). */
  #load(file: string, info: Stats | undefined): Loaded {
    if (info === undefined) return { ids: new IdSet(), identity: '', consumed: 0, seen: 0 };
    const loaded: Loaded = { ids: new IdSet(), identity: identityOf(info), consumed: 0, seen: 0 };
    this.#catchUp(file, loaded);
    return loaded;
  }

  /** Takes in the complete lines appended since `loaded.consumed`. */
  #catchUp(file: string, loaded: Loaded): void {
    const fd = this.#open(file, OPEN_READ);
    try {
      const now = fstatSync(fd);
      if (identityOf(now) !== loaded.identity) {
        loaded.identity = identityOf(now);
        loaded.consumed = 0;
      }
      const bytes = readRange(fd, loaded.consumed, Math.max(0, now.size - loaded.consumed));
      const complete = completeLength(bytes);
      const { ids, badLines } = parseTenantLines(bytes.toString('utf8', 0, complete));
      for (const id of ids) loaded.ids.add(id);
      loaded.consumed += complete;
      loaded.seen = loaded.consumed + (bytes.length - complete);
      if (badLines > 0) this.#log.warn(`tenant file ${file}: skipped ${badLines} torn line(s) (their ids are rewritten from the write-ahead log of whoever wrote them)`);
    } finally {
      closeSync(fd);
    }
  }

  /** The files appended to since the last call (and whether a file was created): what a checkpoint must fsync. */
  takeUnsynced(): { files: string[]; folder: boolean } {
    const taken = { files: [...this.#unsynced], folder: this.#folderUnsynced };
    this.#unsynced = new Set();
    this.#folderUnsynced = false;
    return taken;
  }

  /** A checkpoint failed: these still need their fsync. */
  putBackUnsynced(files: readonly string[], folder: boolean): void {
    for (const file of files) this.#unsynced.add(file);
    if (folder) this.#folderUnsynced = true;
  }
}
