import { mkdtempSync, readdirSync, rmSync, symlinkSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Wal, listSegments, readSegments } from '../../worker/wal.js';

let dir: string;
const noop = (): void => {};
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-wal-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('Wal', () => {
  it('logs every batch of concurrent appends (group commit) and replays them', async () => {
    const wal = await Wal.open(dir, 'fsync');
    await Promise.all(Array.from({ length: 200 }, (_, i) => wal.append(['t', `id${i}`], noop)));
    await wal.close();
    const { pairs, badLines } = await readSegments(dir, await listSegments(dir));
    expect(badLines).toBe(0);
    expect(pairs).toHaveLength(400);
    expect(new Set(pairs.filter((_, i) => i % 2 === 1)).size).toBe(200);
  });

  it('rotates: later appends go to a new segment; dropping the sealed ones keeps the new', async () => {
    const wal = await Wal.open(dir, 'write');
    await wal.append(['t', 'old'], noop);
    const sealed = await wal.rotate();
    await wal.append(['t', 'new'], noop);
    await wal.dropThrough(sealed);
    const { pairs } = await readSegments(dir, await listSegments(dir));
    expect(pairs).toEqual(['t', 'new']);
    await wal.close();
  });

  it('does not rotate an empty segment', async () => {
    const wal = await Wal.open(dir, 'fsync');
    await wal.rotate();
    await wal.rotate();
    expect(await listSegments(dir)).toHaveLength(1);
    await wal.close();
  });

  it('opens after the segments a crashed run left, and skips a torn last record', async () => {
    const first = await Wal.open(dir, 'fsync');
    await first.append(['t', 'a'], noop);
    // No close(): the process "died". Its last record was cut mid-write.
    appendFileSync(path.join(dir, readdirSync(dir)[0]!), '["t","b');
    const second = await Wal.open(dir, 'fsync');
    await second.append(['t', 'c'], noop);
    const { pairs, badLines } = await readSegments(dir, await listSegments(dir));
    expect(pairs).toEqual(['t', 'a', 't', 'c']);
    expect(badLines).toBe(1);
    await second.close();
    await first.close();
  });

  it('applies a batch only once it is written; a failed write applies nothing and the log goes on', async () => {
    // The next segment is /dev/full: every write fails with ENOSPC, as on a full disk.
    const wal = await Wal.open(dir, 'write');
    const applied: string[] = [];
    await wal.append(['t', 'a'], () => applied.push('a'));
    symlinkSync('/dev/full', path.join(dir, '000000000002.log'));
    const sealed = await wal.rotate();
    await expect(wal.append(['t', 'b'], () => applied.push('b'))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(applied).toEqual(['a']);
    // The disk is back (a new segment); the log goes on.
    rmSync(path.join(dir, '000000000002.log'));
    await wal.rotate();
    await wal.append(['t', 'c'], () => applied.push('c'));
    expect(applied).toEqual(['a', 'c']);
    await wal.dropThrough(sealed);
    await wal.close();
    expect((await readSegments(dir, await listSegments(dir))).pairs).toEqual(['t', 'c']);
  });

  it('applies a batch with nothing new at once, without a write', async () => {
    const wal = await Wal.open(dir, 'fsync');
    let applied = false;
    await wal.append([], () => { applied = true; });
    expect(applied).toBe(true);
    await wal.close();
    expect((await readSegments(dir, await listSegments(dir))).pairs).toEqual([]);
  });

  it('acknowledges at once and writes nothing with durability off', async () => {
    const wal = await Wal.open(dir, 'off');
    await wal.append(['t', 'a'], noop);
    await wal.close();
    expect((await readSegments(dir, await listSegments(dir))).pairs).toEqual([]);
  });
});
