import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { locksFolder } from '../../worker/store/shards.js';
import { exitOf, stopProcess } from '../helpers/stop-process.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/persist-ids.mjs', import.meta.url));
const children: ChildProcess[] = [];
let dir: string | undefined;
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => stopProcess(child, { signal: 'SIGKILL' })));
  if (dir !== undefined) removeTempDir(dir);
});

/** When one process's persists started and ended, epoch ms. */
type Intervals = Array<[number, number]>;

/** The next IPC message of `type` from `child`; rejects if it exits first. */
function message<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: { type?: string }): void => {
      if (m?.type !== type) return;
      child.off('message', onMessage);
      resolve(m as T);
    };
    child.on('message', onMessage);
    void exitOf(child).then(({ code, signal }) => reject(new Error(`persist-ids exited (code ${code}, signal ${signal}) before '${type}'`)));
  });
}

/** The most persists in progress at one moment, across all processes. */
function peakConcurrency(all: Intervals[]): number {
  const events = all.flat().flatMap(([start, end]) => [[start, 1], [end, -1]] as const);
  // At equal times an end comes first: touching intervals do not overlap.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, delta] of events) peak = Math.max(peak, (now += delta));
  return peak;
}

/** How many processes had a persist in progress while another process had one too. */
function processesOverlapping(all: Intervals[]): number {
  return all.filter((mine, i) => all.some((theirs, j) => j !== i && mine.some(([s1, e1]) => theirs.some(([s2, e2]) => s1 < e2 && s2 < e1)))).length;
}

it('8 worker processes persisting one tenant at the same moment lose nothing: the file holds exactly the union', async () => {
  dir = makeTempDir('countapp-concurrent-');
  const processes = 8;
  const perProcess = 5000;
  const rounds = 5;
  // Ranges overlap by half: process i holds ids [i*2500, i*2500 + 5000).
  for (let i = 0; i < processes; i++) {
    children.push(fork(FIXTURE, [dir, 'shared-tenant', String(i * 2500), String(i * 2500 + perProcess), String(rounds)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  }
  // All loaded and waiting, then all let go at once: the persists start together whatever the machine's load.
  await Promise.all(children.map((child) => message(child, 'ready')));
  const done = children.map((child) => message<{ persists: Intervals }>(child, 'done'));
  for (const child of children) child.send({ type: 'go' });
  const intervals = (await Promise.all(done)).map((m) => m.persists);
  expect((await Promise.all(children.map(exitOf))).map((exit) => exit.code)).toEqual(Array(processes).fill(0));

  // They really did persist at the same time (else this test would prove nothing about locking).
  const peak = peakConcurrency(intervals);
  const overlapping = processesOverlapping(intervals);
  console.log(`concurrent persist: ${processes} processes × ${rounds} persists; up to ${peak} in progress at once; ${overlapping} of ${processes} processes overlapped another's persist`);
  expect(intervals.every((mine) => mine.length === rounds)).toBe(true);
  expect(peak).toBeGreaterThanOrEqual(2);
  expect(overlapping).toBeGreaterThanOrEqual(processes / 2);

  const lines = readFileSync(tenantFilePath(dir, 'shared-tenant'), 'utf8').split('\n');
  expect(lines.at(-1)).toBe(''); // ends with a complete line
  const ids: string[] = [];
  for (const line of lines.filter(Boolean).slice(1)) {
    const value: unknown[] = JSON.parse(line); // every line is valid JSON: nothing half-written
    ids.push(...(value.slice(0, -1) as string[]));
    // Each append ends with the tenant's distinct count after it: exact at every line.
    expect(value.at(-1)).toBe(new Set(ids).size);
  }
  const expected = 7 * 2500 + perProcess; // 22,500 distinct ids
  expect(new Set(ids).size).toBe(expected);
  // Each persist read what the others appended first, so no id was written twice.
  expect(ids).toHaveLength(expected);
  expect(readdirSync(locksFolder(dir))).toEqual([]);
}, 60_000);
