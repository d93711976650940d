import fs from 'node:fs';

/**
 * What Linux's /proc says about a process. Everything here answers "unknown" (undefined,
 * false, []) rather than throwing when the process is gone or there is no /proc.
 */

/** Fields of /proc/<pid>/stat that the harness uses. */
export interface ProcStat {
  /** R, S, D, T, Z (zombie), X (dead)… */
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
  readonly session: number;
  /** Start time in clock ticks since boot: with the pid, it names one process for good. */
  readonly start: number;
  /** CPU time used so far, user + system, seconds (clock ticks are USER_HZ, 100 on Linux). */
  readonly cpuSeconds: number;
}

const TICKS_PER_SECOND = 100;

/** /proc/<pid>/stat, or undefined when there is no such process (or no /proc). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    state: fields[0]!,
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    session: Number(fields[3]),
    start: Number(fields[19]),
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
  };
}

/** True while `pid` is a running process (an exited but unreaped zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const state = procStat(pid)?.state;
  return state !== 'Z' && state !== 'X';
}

/** Every pid in /proc now (empty without /proc). */
export function allPids(): number[] {
  try {
    return fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number);
  } catch {
    return [];
  }
}

/**
 * True when `pid` is a Node.js process whose environment holds `entry` (`NAME=value`).
 * Only Node.js processes can be the harness's: every other process's environment stays unread.
 */
export function hasEnvironment(pid: number, entry: string): boolean {
  try {
    const argv0 = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
    if (argv0 !== process.execPath && !/(^|\/)node(js)?[\d.]*$/.test(argv0)) return false;
    const environ = fs.readFileSync(`/proc/${pid}/environ`);
    const needle = Buffer.from(`${entry}\0`);
    return environ.indexOf(needle) === 0 || environ.indexOf(Buffer.concat([Buffer.from([0]), needle])) !== -1;
  } catch {
    return false;
  }
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status); throws when unknown. */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}
