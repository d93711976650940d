import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';

type Level = 'INFO' | 'WARN' | 'ERROR';

/** A short id that ties a client's error answer to the log line with the full detail. */
export function newErrorId(): string {
  return randomBytes(6).toString('hex');
}

function describe(detail: unknown): string {
  if (detail instanceof Error) {
    const cause = detail.cause === undefined ? '' : `\n  caused by: ${describe(detail.cause)}`;
    return `${detail.stack ?? `${detail.name}: ${detail.message}`}${cause}`;
  }
  if (typeof detail === 'string') return detail;
  try {
    return JSON.stringify(detail);
  } catch {
    return String(detail);
  }
}

/**
 * One line per event: `time LEVEL component [id] message | detail`. Lines go to stdout
 * (workers' stdout is their log file) and, when a file is given, to that file as well.
 * Writes are synchronous on purpose: a line logged just before a crash must not be lost.
 */
export class Logger {
  readonly #component: string;
  #file: string | undefined;

  constructor(component: string, file?: string) {
    this.#component = component;
    this.#file = file;
  }

  /** Also write every line to this file (the coordinator's own log next to the workers'). */
  setFile(file: string | undefined): void {
    this.#file = file;
  }

  info(message: string, detail?: unknown): void {
    this.#write('INFO', undefined, message, detail);
  }

  /** With an id when a client was told one (its mistake is logged as a warning, not an error). */
  warn(message: string, detail?: unknown, id?: string): void {
    this.#write('WARN', id, message, detail);
  }

  /** Logs with a fresh id (or the given one) and returns it, so the caller can hand it to the client. */
  error(message: string, detail?: unknown, id: string = newErrorId()): string {
    this.#write('ERROR', id, message, detail);
    return id;
  }

  #write(level: Level, id: string | undefined, message: string, detail: unknown): void {
    const tag = id === undefined ? '' : ` [${id}]`;
    const tail = detail === undefined ? '' : ` | ${describe(detail)}`;
    const line = `${new Date().toISOString()} ${level} ${this.#component}${tag} ${message}${tail}\n`;
    try {
      process.stdout.write(line);
    } catch {
      // stdout closed (the terminal went away): the file below still has the line.
    }
    if (this.#file !== undefined) {
      try {
        appendFileSync(this.#file, line);
      } catch {
        // A full or read-only log disk must not take the service down.
      }
    }
  }
}
