import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

/** What a holder tells a process that finds its lock taken. */
export interface HolderInfo {
  readonly pid: number;
  /** What the holder is doing with it: `coordinator`, `worker`, `adopting`... */
  readonly role: string;
  /** Free-form detail for the message (a port, a worker id). */
  readonly detail?: string;
}

/** Thrown when another live process holds the lock; `holder` says who, when it answered. */
export class LockHeldError extends Error {
  override name = 'LockHeldError';
  readonly holder: HolderInfo | undefined;

  constructor(message: string, holder: HolderInfo | undefined) {
    super(message);
    this.holder = holder;
  }
}

/** How long a holder has to say who it is before we give up asking. */
const ASK_TIMEOUT_MS = 1000;

/**
 * A path that names the same folder however it is spelled (symlinks, `..`), even when
 * the folder does not exist yet: the nearest existing ancestor is resolved.
 */
export function canonicalPath(target: string): string {
  const absolute = path.resolve(target);
  try {
    return realpathSync(absolute);
  } catch {
    const parent = path.dirname(absolute);
    return parent === absolute ? absolute : path.join(canonicalPath(parent), path.basename(absolute));
  }
}

/**
 * The socket name of lock `name` of `database`. On Linux an abstract socket (a leading
 * NUL): it has no file, so no crash leaves it behind and no hand can delete or empty it,
 * and the kernel frees it the moment the holder dies, SIGKILL included. Elsewhere a
 * socket file in the system's temp folder, which `acquire` probes before reusing.
 */
function socketPath(database: string, name: string): string {
  const key = createHash('sha256').update(canonicalPath(database)).digest('hex').slice(0, 24);
  const base = `countapp-${key}-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
  return process.platform === 'linux' ? `\0${base}` : path.join(process.env.TMPDIR ?? '/tmp', `${base}.sock`);
}

/** Connects to a held lock and reads the holder's description (undefined if it does not answer). */
function askHolder(socket: string): Promise<HolderInfo | undefined | 'gone'> {
  return new Promise((resolve) => {
    let text = '';
    const conn = net.connect({ path: socket });
    const timer = setTimeout(() => {
      conn.destroy();
      resolve(undefined);
    }, ASK_TIMEOUT_MS);
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      text += chunk;
    });
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        const info = JSON.parse(text) as HolderInfo;
        resolve(typeof info.pid === 'number' ? info : undefined);
      } catch {
        resolve(undefined);
      }
    });
    conn.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // A socket file with nobody behind it (non-Linux, a crashed holder).
      resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'gone' : undefined);
    });
  });
}

function listenOn(server: net.Server, socket: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: socket, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * An exclusive hold on one name per database (`cluster`, `wal-worker-5001`...) for as long
 * as this process keeps it, released by the kernel when the process dies however it dies.
 * It proves that the holder runs: a free lock means nobody holds it, a taken one that a
 * live process holds. Unlike a pid file, nothing in the database folder records it.
 */
export class ProcessLock {
  readonly #server: net.Server;
  readonly #socket: string;
  #released: Promise<void> | undefined;

  private constructor(server: net.Server, socket: string) {
    this.#server = server;
    this.#socket = socket;
  }

  /**
   * Takes lock `name` of `database`, or throws LockHeldError naming the holder. `info`
   * is what a process that finds it taken is told.
   */
  static async acquire(database: string, name: string, info: HolderInfo): Promise<ProcessLock> {
    return (await ProcessLock.#take(database, name, info, true))!;
  }

  /**
   * Takes the lock if it is free; undefined when a live process holds it. On Linux the
   * holder is not asked who it is (nobody would read it): a held abstract socket is a live
   * holder, and not asking spares both processes a connection — adopters probe often.
   */
  static async tryAcquire(database: string, name: string, info: HolderInfo): Promise<ProcessLock | undefined> {
    try {
      return await ProcessLock.#take(database, name, info, false);
    } catch (err) {
      if (err instanceof LockHeldError) return undefined;
      throw err;
    }
  }

  /** `acquire`, or with `named` false, undefined for a lock held by a live holder on Linux. */
  static async #take(database: string, name: string, info: HolderInfo, named: boolean): Promise<ProcessLock | undefined> {
    const socket = socketPath(database, name);
    const answer = JSON.stringify(info);
    for (let attempt = 0; ; attempt++) {
      const server = net.createServer((conn) => {
        conn.on('error', () => {});
        conn.end(answer);
      });
      // The lock must never keep the process alive on its own.
      server.unref();
      try {
        await listenOn(server, socket);
        return new ProcessLock(server, socket);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
      // An abstract socket cannot outlive its holder: taken means held by a live process.
      if (!named && socket.startsWith('\0')) return undefined;
      const holder = await askHolder(socket);
      if (holder === 'gone' && attempt === 0 && !socket.startsWith('\0')) {
        // A socket file left by a holder that died: nobody listens, so it is ours to replace.
        await rm(socket, { force: true });
        continue;
      }
      const who = holder === undefined || holder === 'gone' ? 'another process' : `pid ${holder.pid} (${holder.role}${holder.detail === undefined ? '' : `, ${holder.detail}`})`;
      throw new LockHeldError(`${name} of ${canonicalPath(database)} is held by ${who}`, holder === 'gone' ? undefined : holder);
    }
  }

  /** Lets the lock go; a second call returns the same promise. */
  release(): Promise<void> {
    this.#released ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
    }).then(async () => {
      if (!this.#socket.startsWith('\0')) await rm(this.#socket, { force: true });
    });
    return this.#released;
  }
}
