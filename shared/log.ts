import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import pino, { type DestinationStream, type Logger as Pino } from 'pino';
import { DATA_DIR_MODE, DATA_FILE_MODE, tightenFileMode } from './data-modes.js';
import type { LogLevel } from './log-level.js';

export type { LogLevel } from './log-level.js';

/** A short id that ties a client's error answer to the log line with the full detail. */
export function newErrorId(): string {
  return randomBytes(6).toString('hex');
}

/** Lines kept in memory until setFile() when `holdUntilFile` is on: enough for any start-up. */
const HELD_LINES_MAX = 1000;

export interface LoggerOptions {
  /**
   * Keep the lines logged before the first setFile() and write them into that file then,
   * so what is said while the config is read (its warnings) lands in the log file too.
   * @default false
   */
  readonly holdUntilFile?: boolean;
  /** @default 'info' */
  readonly level?: LogLevel;
}

/** A synchronous destination: each line is in the kernel's hands when write() returns, so a SIGKILL right after loses nothing. */
interface SyncDestination {
  write(line: string): void;
}

/** Log lines hold ids: the folder and file are the owner's only (README), like the data. */
function openLogFile(file: string): number {
  mkdirSync(path.dirname(file), { recursive: true, mode: DATA_DIR_MODE });
  const fd = openSync(file, 'a', DATA_FILE_MODE);
  // The mode applies only when the file is created: narrow one an older version made 0644.
  tightenFileMode(fd);
  return fd;
}

function syncDestination(dest: number | string): SyncDestination {
  const stream = pino.destination({ dest: typeof dest === 'string' ? openLogFile(dest) : dest, sync: true });
  // A full or read-only log disk, or a terminal that went away (EPIPE), must not take the service down.
  stream.on('error', () => {});
  return {
    write(line: string): void {
      try {
        stream.write(line);
      } catch {
        // Same as above: the line is lost, the process goes on.
      }
    },
  };
}

let stdoutDestination: SyncDestination | undefined;

/**
 * Standard output, shared by every Logger of the process: JSON lines, or pino-pretty's
 * colored lines when it is a terminal (a person reads it). Formatting is synchronous
 * (pino-pretty's prettyFactory, not its transport), so no line waits in a buffer.
 */
function stdout(): SyncDestination {
  if (stdoutDestination !== undefined) return stdoutDestination;
  const raw = syncDestination(1);
  if (process.stdout.isTTY !== true) return (stdoutDestination = raw);
  // CommonJS and needed only on a terminal: loaded synchronously, on demand.
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  const pretty = prettyFactory({ colorize: true, ignore: 'hostname', translateTime: 'SYS:HH:MM:ss.l' });
  return (stdoutDestination = {
    write(line: string): void {
      let text: string;
      try {
        text = pretty(line);
      } catch {
        text = line;
      }
      raw.write(text);
    },
  });
}

/** What a log line carries besides its message: `err` for an Error, `detail` for anything else, `code` lifted when there is one. */
function fieldsOf(id: string | undefined, detail: unknown): Record<string, unknown> | undefined {
  if (id === undefined && detail === undefined) return undefined;
  const fields: Record<string, unknown> = {};
  if (id !== undefined) fields.errorId = id;
  if (detail === undefined) return fields;
  if (detail instanceof Error) fields.err = detail;
  else fields.detail = detail;
  const code = (detail as { code?: unknown } | null)?.code;
  if (typeof code === 'string') fields.code = code;
  return fields;
}

/**
 * Structured logs (pino): one JSON line per event — `level`, `time`, `pid`, `hostname`,
 * `name` (the process: `coordinator`, `worker-5001`), `msg`, and when there is one the
 * `errorId` a client was told, the error `code`, the error (`err`, with its stack and
 * causes) or a `detail`. Lines go to stdout (a worker's stdout is its log file) and, once
 * a file is set, to that file as well. Every write is synchronous on purpose: a line
 * logged just before a SIGKILL must not be lost. Log files are opened in append mode, so
 * `copytruncate` rotation works while they are open (see the README).
 */
export class Logger {
  readonly #component: string;
  #level: LogLevel;
  #file: SyncDestination | undefined;
  #held: string[] | undefined;
  #pino: Pino;

  constructor(component: string, file?: string, options: LoggerOptions = {}) {
    this.#component = component;
    this.#level = options.level ?? 'info';
    this.#held = options.holdUntilFile === true && file === undefined ? [] : undefined;
    this.#file = file === undefined ? undefined : syncDestination(file);
    this.#pino = this.#make();
  }

  /** Also write every line to this file (the coordinator's own log next to the workers'); lines held so far go there first. */
  setFile(file: string | undefined): void {
    this.#file = file === undefined ? undefined : syncDestination(file);
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined && this.#file !== undefined) for (const line of held) this.#file.write(line);
  }

  /** Lines below `level` are dropped from now on. */
  setLevel(level: LogLevel): void {
    if (level === this.#level) return;
    this.#level = level;
    this.#pino.level = level;
  }

  get level(): LogLevel {
    return this.#level;
  }

  debug(message: string, detail?: unknown): void {
    this.#log('debug', undefined, message, detail);
  }

  info(message: string, detail?: unknown): void {
    this.#log('info', undefined, message, detail);
  }

  /** With an id when a client was told one (its mistake is logged as a warning, not an error). */
  warn(message: string, detail?: unknown, id?: string): void {
    this.#log('warn', id, message, detail);
  }

  /** Logs with a fresh id (or the given one) and returns it, so the caller can hand it to the client. */
  error(message: string, detail?: unknown, id: string = newErrorId()): string {
    this.#log('error', id, message, detail);
    return id;
  }

  #log(level: Exclude<LogLevel, 'silent'>, id: string | undefined, message: string, detail: unknown): void {
    const fields = fieldsOf(id, detail);
    // The message is the format string's only argument, so a `%` in it is printed as it is.
    if (fields === undefined) this.#pino[level]('%s', message);
    else this.#pino[level](fields, '%s', message);
  }

  #make(): Pino {
    const out = stdout();
    const destination: DestinationStream = {
      write: (line: string): void => {
        out.write(line);
        if (this.#file !== undefined) this.#file.write(line);
        else if (this.#held !== undefined && this.#held.length < HELD_LINES_MAX) this.#held.push(line);
      },
    };
    return pino({
      name: this.#component,
      level: this.#level,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    }, destination);
  }
}
