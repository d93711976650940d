import { appendFileSync, constants, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Pending } from '../../worker/pending.js';
import { Wal, WalLostError, asRecord, listSegments, type WalOptions } from '../../worker/wal.js';
import { applyRecord, replaySegments } from '../../worker/wal-records.js';
import { registry } from '../../shared/metrics.js';
import '../../worker/metrics.js';

let root: string;
let dir: string;
const noop = (): void => {};
const batch = (tenant: string, ...ids: string[]): Buffer => asRecord(JSON.stringify(ids.map((id) => ({ id, tenant }))));
const options = (durability: WalOptions['durability'], unpersisted: () => Buffer[] = () => []): WalOptions => ({ durability, unpersisted });

/** The open flags of this process's descriptors on the log's current segment files (from /proc/self/fdinfo). */
function segmentFlags(): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed while we looked
    }
    if (path.dirname(target) !== dir) continue;
    const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n').find((row) => row.startsWith('flags:'))!;
    flags.push(Number.parseInt(line.slice('flags:'.length).trim(), 8));
  }
  return flags;
}

/** Every (tenant, id) the log holds, as replay sees it. */
async function replayed(): Promise<{ ids: Map<string, string[]>; badLines: number }> {
  const pending = new Pending();
  const { badLines } = await replaySegments(dir, await listSegments(dir), pending);
  return { ids: pending.take(), badLines };
}

beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'countapp-wal-'));
  dir = path.join(root, 'wal');
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('Wal', () => {
  it('logs every record of concurrent appends (group commit) and replays them', async () => {
    const wal = await Wal.open(dir, options('fsync'));
    await Promise.all(Array.from({ length: 200 }, (_, i) => wal.append(batch('t', `id${i}`), noop)));
    await wal.close();
    const { ids, badLines } = await replayed();
    expect(badLines).toBe(0);
    expect(new Set(ids.get('t')).size).toBe(200);
  });

  it('keeps a record on one line even when the client sent its JSON over several', async () => {
    const wal = await Wal.open(dir, options('write'));
    await wal.append(asRecord('[\n  {"id": "a",\n   "tenant": "t"}\n]'), noop);
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map([['t', ['a']]]));
  });

  it('rotates: later appends go to a new segment; dropping the sealed ones keeps the new', async () => {
    const wal = await Wal.open(dir, options('write'));
    await wal.append(batch('t', 'old'), noop);
    const sealed = await wal.rotate();
    await wal.append(batch('t', 'new'), noop);
    await wal.dropThrough(sealed);
    expect((await replayed()).ids).toEqual(new Map([['t', ['new']]]));
    await wal.close();
  });

  it('does not rotate an empty segment', async () => {
    const wal = await Wal.open(dir, options('fsync'));
    await wal.rotate();
    await wal.rotate();
    expect(await listSegments(dir)).toHaveLength(1);
    await wal.close();
  });

  it('opens after the segments a crashed run left, and skips a torn last record', async () => {
    const first = await Wal.open(dir, options('fsync'));
    await first.append(batch('t', 'a'), noop);
    // No close(): the process "died". Its last record was cut mid-write.
    appendFileSync(path.join(dir, readdirSync(dir)[0]!), '[{"id":"b","ten');
    const second = await Wal.open(dir, options('fsync'));
    await second.append(batch('t', 'c'), noop);
    const { ids, badLines } = await replayed();
    expect(ids).toEqual(new Map([['t', ['a', 'c']]]));
    expect(badLines).toBe(1);
    await second.close();
    await first.close();
  });

  it('refuses a segment path that is a symlink and goes on in the current segment', async () => {
    const wal = await Wal.open(dir, options('write'));
    const applied: string[] = [];
    await wal.append(batch('t', 'a'), () => applied.push('a'));
    symlinkSync('/dev/full', path.join(dir, '000000000002.log'));
    // A segment path that is a symlink is refused, never followed: the rotation fails, the log stays on segment 1.
    await expect(wal.rotate()).rejects.toMatchObject({ code: 'ELOOP' });
    await wal.append(batch('t', 'b'), () => applied.push('b'));
    rmSync(path.join(dir, '000000000002.log'));
    expect(applied).toEqual(['a', 'b']);
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map([['t', ['a', 'b']]]));
  });

  it('acknowledges at once and writes nothing with durability off', async () => {
    const wal = await Wal.open(dir, options('off'));
    let applied = false;
    await wal.append(batch('t', 'a'), () => { applied = true; });
    expect(applied).toBe(true);
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map());
  });

  it.each([
    ['deleted', () => rmSync(dir, { recursive: true, force: true })],
    ['moved away', () => renameSync(dir, `${dir}-moved`)],
  ])('never acknowledges into a segment that was %s, and takes records again once recovered with everything unpersisted', async (_what, damage) => {
    const unpersisted = [Buffer.from('{"t":["a","b"]}')];
    const wal = await Wal.open(dir, options('fsync', () => unpersisted));
    await wal.append(batch('t', 'a'), noop);
    damage();
    const applied: string[] = [];
    await expect(wal.append(batch('t', 'b'), () => applied.push('b'))).rejects.toBeInstanceOf(WalLostError);
    expect(wal.lost).toBe(true);
    await expect(wal.append(batch('t', 'c'), () => applied.push('c'))).rejects.toBeInstanceOf(WalLostError);
    expect(applied).toEqual([]);
    await wal.recover();
    expect(wal.lost).toBe(false);
    await wal.append(batch('t', 'd'), () => applied.push('d'));
    expect(applied).toEqual(['d']);
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map([['t', ['a', 'b', 'd']]]));
  });

  it('writes the batches appended in one turn of the event loop as one group (one write and fdatasync)', async () => {
    const groups = async (): Promise<{ count: number; sum: number }> => {
      const values = (await registry.getSingleMetric('countapp_worker_wal_group_records')!.get()).values;
      const value = (suffix: string): number => values.find((v) => (v as { metricName?: string }).metricName === `countapp_worker_wal_group_records_${suffix}`)?.value ?? 0;
      return { count: value('count'), sum: value('sum') };
    };
    const wal = await Wal.open(dir, options('fsync'));
    const before = await groups();
    await Promise.all(['a', 'b', 'c'].map((id) => wal.append(batch('t', id), noop)));
    const after = await groups();
    expect({ count: after.count - before.count, sum: after.sum - before.sum }).toEqual({ count: 1, sum: 3 });
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map([['t', ['a', 'b', 'c']]]));
  });

  it('with durability fsync writes to segments opened O_DSYNC (durable when the write returns); a segment opened before syncs by hand until rotated', async () => {
    const syncs = async (): Promise<number> => {
      const values = (await registry.getSingleMetric('countapp_worker_wal_fsync_seconds')!.get()).values;
      return values.find((v) => (v as { metricName?: string }).metricName === 'countapp_worker_wal_fsync_seconds_count')?.value ?? 0;
    };
    const wal = await Wal.open(dir, options('write'));
    await wal.append(batch('t', 'a'), noop);
    expect(segmentFlags().map((flags) => flags & constants.O_DSYNC)).toEqual([0]);
    wal.setDurability('fsync');
    const before = await syncs();
    await wal.append(batch('t', 'b'), noop);
    expect(await syncs()).toBe(before + 1);
    await wal.rotate();
    await wal.append(batch('t', 'c'), noop);
    expect(segmentFlags().map((flags) => flags & constants.O_DSYNC)).toEqual([constants.O_DSYNC]);
    expect(await syncs()).toBe(before + 2);
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map([['t', ['a', 'b', 'c']]]));
  });

  it('finds a log deleted while no batch arrives when probed, and recovers it with everything unpersisted', async () => {
    const unpersisted = [Buffer.from('{"t":["a"]}')];
    const wal = await Wal.open(dir, options('fsync', () => unpersisted));
    await wal.append(batch('t', 'a'), noop);
    expect(wal.probeLost()).toBe(false);
    rmSync(dir, { recursive: true, force: true });
    expect(wal.lost).toBe(false); // nothing has looked yet
    expect(wal.probeLost()).toBe(true);
    await expect(wal.append(batch('t', 'b'), noop)).rejects.toBeInstanceOf(WalLostError);
    await wal.recover();
    expect(wal.probeLost()).toBe(false);
    await wal.close();
    expect((await replayed()).ids).toEqual(new Map([['t', ['a']]]));
  });
});

describe('write-ahead log records', () => {
  it('replays batches as sent (keys in any case), hand-overs, and the flattened pairs of earlier versions', () => {
    const pending = new Pending();
    expect(applyRecord([{ id: 'a', tenant: 't' }, { ID: 'b', Tenant: 't' }, { id: 'c', tenant: 'u', extra: 1 }], pending)).toBe(true);
    expect(applyRecord({ t: ['d'], v: ['e'] }, pending)).toBe(true);
    expect(applyRecord(['t', 'f', 'w', 'g'], pending)).toBe(true);
    expect(applyRecord(42, pending)).toBe(false);
    expect(pending.take()).toEqual(new Map([['t', ['a', 'b', 'd', 'f']], ['u', ['c']], ['v', ['e']], ['w', ['g']]]));
  });

  it('replays a segment whose batches are read without JSON.parse where they can be, and with it where not, torn lines skipped', async () => {
    const records = [
      '[{"id":"a","tenant":"t"},{"tenant":"u","id":"b"}]',
      '[ {"id" : "c", "tenant" : "t"} ]',
      '[{"ID":"d","Tenant":"t"}]',
      '[{"id":"e\\"x","tenant":"t"}]',
      '{"v":["f","g"]}',
      '[{"id":"torn","ten',
      '["w","h"]',
    ];
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, '000000000001.log'), `${records.join('\n')}\n`);
    const pending = new Pending();
    expect(await replaySegments(dir, [1], pending)).toEqual({ records: 6, badLines: 1 });
    expect(pending.take()).toEqual(new Map([['t', ['a', 'c', 'd', 'e"x']], ['u', ['b']], ['v', ['f', 'g']], ['w', ['h']]]));
  });

  it('replays records holding C1 control characters (U+0080-U+009F, acknowledged before they were refused), raw and escaped', async () => {
    const records = [
      '[{"id":"a\u0085","tenant":"t"},{"id":"b","tenant":"t\u0080"}]',
      '[{"id":"c\\u009f","tenant":"t"}]',
      '{"t\u0085":["d"]}',
    ];
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, '000000000001.log'), `${records.join('\n')}\n`);
    const pending = new Pending();
    expect(await replaySegments(dir, [1], pending)).toEqual({ records: 3, badLines: 0 });
    expect(pending.take()).toEqual(new Map([['t', ['a\u0085', 'c\u009f']], ['t\u0080', ['b']], ['t\u0085', ['d']]]));
  });

  it('names the segment it cannot read', async () => {
    const wal = await Wal.open(dir, options('write'));
    await wal.close();
    const [seq] = await listSegments(dir);
    rmSync(path.join(dir, readdirSync(dir)[0]!));
    mkdirSync(path.join(dir, readdirSync(dir)[0] ?? '000000000001.log'));
    await expect(replaySegments(dir, [seq!], new Pending())).rejects.toThrow(/write-ahead log segment .*000000000001\.log \(EISDIR\)/);
  });
});
