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

const PERSISTED = /^(\S+) INFO \S+ persisted (\d+) id\(s\) of (\d+) tenant\(s\) in ([\d.]+) ms/;

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
    const match = PERSISTED.exec(line);
    if (match !== null) lines.push({ at: Date.parse(match[1]!), ids: Number(match[2]), tenants: Number(match[3]), ms: Number(match[4]), line });
  }
  return lines;
}
