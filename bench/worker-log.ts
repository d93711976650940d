import fs from 'node:fs';

/** A worker's `persisted N id(s) of M tenant(s) in X ms` log line. */
export interface PersistLine {
  /** The line's timestamp, epoch ms (the log has millisecond precision). */
  readonly at: number;
  readonly ids: number;
  readonly tenants: number;
  readonly ms: number;
  readonly line: string;
}

const PERSISTED = /^persisted (\d+) id\(s\) of (\d+) tenant\(s\) in ([\d.]+) ms/;

/** A log line's time and message (the log is JSON lines), or undefined for anything else. */
function parseLine(line: string): { time: string; msg: string } | undefined {
  try {
    const record = JSON.parse(line) as { time?: unknown; msg?: unknown };
    return typeof record.time === 'string' && typeof record.msg === 'string' ? { time: record.time, msg: record.msg } : undefined;
  } catch {
    return undefined;
  }
}

/** The byte size of the log now: read only what comes after it later. */
export function logSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** Every persist line written to `file` after byte `offset`. */
export function persistLinesAfter(file: string, offset: number): PersistLine[] {
  let text: string;
  try {
    const handle = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(handle).size;
      const buffer = Buffer.alloc(Math.max(0, size - offset));
      fs.readSync(handle, buffer, 0, buffer.length, offset);
      text = buffer.toString('utf8');
    } finally {
      fs.closeSync(handle);
    }
  } catch {
    return [];
  }
  const lines: PersistLine[] = [];
  for (const line of text.split('\n')) {
    const record = parseLine(line);
    const match = record === undefined ? null : PERSISTED.exec(record.msg);
    if (match !== null) lines.push({ at: Date.parse(record!.time), ids: Number(match[1]), tenants: Number(match[2]), ms: Number(match[3]), line });
  }
  return lines;
}
