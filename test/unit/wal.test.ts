import { mkdtempSync, readdirSync, rmSync, symlinkSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Wal, listSegments, readSegments } from '../../worker/wal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-wal-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('Wal', () => {
  it('logs every batch of concurrent appends (group commit) and replays them', async () => {
    const wal = await Wal.open(dir, 'fsync');
    await Promise.all(Array.from({ length: 200 }, (_, i) => wal.append(['t', `id${i}`])));
    await wal.close();
    const { pairs, badLines } = await readSegments(dir, await listSegments(dir));
    expect(badLines).toBe(0);
    expect(pairs).toHaveLength(400);
    expect(new Set(pairs.filter((_, i) => i % 2 === 1)).size).toBe(200);
  });

  it('rotates: later appends go to a new segment; dropping the sealed ones keeps the new', async () => {
    const wal = await Wal.open(dir, 'write');
    await wal.append(['t', 'old']);
    const sealed = await wal.rotate();
    await wal.append(['t', 'new']);
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
    await first.append(['t', 'a']);
    // No close(): the process "died". Its last record was cut mid-write.
    appendFileSync(path.join(dir, readdirSync(dir)[0]!), '["t","b');
    const second = await Wal.open(dir, 'fsync');
    await second.append(['t', 'c']);
    const { pairs, badLines } = await readSegments(dir, await listSegments(dir));
    expect(pairs).toEqual(['t', 'a', 't', 'c']);
    expect(badLines).toBe(1);
    await second.close();
    await first.close();
  });

  it('refuses to acknowledge after a failed write until a persist round caught up', async () => {
    // The next segment is /dev/full: every write fails with ENOSPC, as on a full disk.
    const wal = await Wal.open(dir, 'write');
    await wal.append(['t', 'a']);
    symlinkSync('/dev/full', path.join(dir, '000000000002.log'));
    const sealed = await wal.rotate();
    await expect(wal.append(['t', 'b'])).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(wal.degraded).toBe(true);
    await expect(wal.append(['t', 'c'])).rejects.toThrow(/persist round/);
    // A round that started after the failure persisted everything: acknowledge again.
    const failures = wal.failures;
    rmSync(path.join(dir, '000000000002.log'));
    await wal.rotate();
    wal.markHealthy(failures);
    expect(wal.degraded).toBe(false);
    await wal.append(['t', 'd']);
    await wal.dropThrough(sealed);
    await wal.close();
  });

  it('acknowledges at once and writes nothing with durability off', async () => {
    const wal = await Wal.open(dir, 'off');
    await wal.append(['t', 'a']);
    await wal.close();
    expect((await readSegments(dir, await listSegments(dir))).pairs).toEqual([]);
  });
});
