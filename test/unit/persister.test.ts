import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Logger } from '../../shared/log.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { Pending } from '../../worker/pending.js';
import { Persister } from '../../worker/persister.js';
import { FileStore } from '../../worker/store/files.js';
import { DeadlineError, Merger } from '../../worker/store/merger.js';
import { TenantFiles } from '../../worker/store/tenant-files.js';
import { ShardLocks } from '../../worker/store/shard-locks.js';
import { locksFolder, shardLockTarget, shardOf } from '../../worker/store/shards.js';
import { WalAdopter } from '../../worker/wal-adopter.js';
import { Wal, asRecord, listSegments } from '../../worker/wal.js';
import { replaySegments } from '../../worker/wal-records.js';
import { waitFor } from '../helpers/wait.js';

const log = new Logger('test');
let db: string;

beforeEach(() => {
  db = mkdtempSync(path.join(os.tmpdir(), 'countapp-persist-'));
});
afterEach(() => {
  rmSync(db, { recursive: true, force: true });
});

function merger(files = new TenantFiles(db, log), locks = new ShardLocks({ database: db, staleMs: () => 2000, onLost: () => {} })): Merger {
  return new Merger({ files, locks, log });
}

/** A worker's persisting parts over `db`, with no other worker: it writes every tenant itself. */
async function worker(id = 'worker-1', intervalMs = 60_000, publishMs = 0, live?: (workerId: string) => boolean): Promise<{ pending: Pending; wal: Wal; store: FileStore; persister: Persister; walFolder: string }> {
  const pending = new Pending();
  const walRoot = path.join(db, '.wal');
  const walFolder = path.join(walRoot, id);
  let persister: Persister | undefined;
  const wal = await Wal.open(walFolder, { durability: 'fsync', unpersisted: () => persister!.unpersistedRecords() });
  const store = new FileStore({ database: db, workerId: id, log, secret: () => 's', lockStaleMs: 2000, sync: () => true, handoffTimeoutMs: () => 1000 });
  persister = new Persister({ wal, pending, store, adopter: new WalAdopter({ database: db, walRoot, selfId: id, log, ...(live === undefined ? {} : { live }) }), log, intervalMs, publishMs, phase: 0 });
  return { pending, wal, store, persister, walFolder };
}

/** What a worker does with a batch: log it, then make it pending. */
async function accept(w: { wal: Wal; pending: Pending }, tenant: string, ...ids: string[]): Promise<void> {
  const items = ids.map((id) => ({ id, tenant }));
  await w.wal.append(asRecord(JSON.stringify(items)), () => w.pending.addItems(items));
}

describe('Merger', () => {
  it('fails every tenant a stop deadline stops with one shared DeadlineError, not one each', async () => {
    const tenants = Array.from({ length: 2000 }, (_, i) => `late-${i}`);
    const outcome = await merger().merge(new Map(tenants.map((t) => [t, ['a']])), Date.now() - 1);
    expect(outcome.failed.size).toBe(2000);
    const errors = new Set([...outcome.failed.values()].map((failure) => failure.error));
    expect(errors.size).toBe(1);
    expect([...errors][0]).toBeInstanceOf(DeadlineError);
  });

  it('writes many tenants one shard lock at a time and leaves no lock behind', async () => {
    const tenants = Array.from({ length: 300 }, (_, i) => `tenant-${i}`);
    const outcome = await merger().merge(new Map(tenants.map((t) => [t, ['a', 'b']])));
    expect(outcome.failed.size).toBe(0);
    expect(outcome.written).toBe(600);
    const files = new TenantFiles(db, log);
    for (const t of tenants) expect(files.count(t)).toBe(2);
    expect(readdirSync(locksFolder(db))).toEqual([]);
  });

  it('isolates a tenant it cannot write: the others of its shard and the rest go through', async () => {
    const bad = 'bad';
    const sameShard = Array.from({ length: 5000 }, (_, i) => `n${i}`).find((t) => shardOf(t) === shardOf(bad))!;
    mkdirSync(tenantFilePath(db, bad)); // a directory where the file should be
    const outcome = await merger().merge(new Map([[bad, ['x']], [sameShard, ['y']], ['other', ['z']]]));
    expect([...outcome.failed.keys()]).toEqual([bad]);
    expect(outcome.failed.get(bad)!.ids).toEqual(['x']);
    expect(String(outcome.failed.get(bad)!.error)).toMatch(/bad\.json is a directory/);
    expect(new TenantFiles(db, log).count(sameShard)).toBe(1);
  });

  it('keeps the locks of the shards it owns between passes, takes the others for one pass, and lets go of all on close', async () => {
    const locks = new ShardLocks({ database: db, staleMs: () => 2000, onLost: () => {} });
    const owned = shardOf('mine');
    await locks.own([owned]);
    const m = merger(new TenantFiles(db, log), locks);
    await m.merge(new Map([['mine', ['1']], ['theirs', ['1']]]));
    expect(locks.held).toBe(1);
    expect(readdirSync(locksFolder(db))).toEqual([`${path.basename(shardLockTarget(db, owned))}.lock`]);
    await locks.own([]); // the shard moved to another worker
    expect(readdirSync(locksFolder(db))).toEqual([]);
    await locks.own([owned]);
    await m.merge(new Map([['mine', ['2']]]));
    await locks.releaseAll();
    expect(readdirSync(locksFolder(db))).toEqual([]);
  });

  it('gives up on what it has not begun once a stopping worker runs out of time', async () => {
    const outcome = await merger().merge(new Map([['t', ['x']]]), Date.now() - 1);
    expect(outcome.failed.get('t')!.error).toBeInstanceOf(DeadlineError);
  });

  it('joins merges asked for while one runs, and answers each for its own tenants', async () => {
    const m = merger();
    const results = await Promise.all([m.merge(new Map([['a', ['1']]])), m.merge(new Map([['b', ['1']], ['a', ['2']]])), m.merge(new Map([['a', ['1']]]))]);
    expect(results.every((r) => r.failed.size === 0)).toBe(true);
    expect(new TenantFiles(db, log).count('a')).toBe(2);
    await m.idle();
  });
});

describe('Persister', () => {
  it('persists every pending id, checkpoints, and only then deletes the sealed log segments', async () => {
    const w = await worker();
    await accept(w, 't', 'a', 'b');
    await accept(w, 'u', 'c');
    const round = await w.persister.persistNow();
    expect(round).toMatchObject({ ok: true, tenants: 2, ids: 3, failedTenants: 0 });
    expect(await w.store.count('t')).toBe(2);
    expect(await w.store.count('u')).toBe(1);
    expect(w.pending.ids).toBe(0);
    expect(await listSegments(w.walFolder)).toHaveLength(1); // only the new, empty one
    await w.wal.close();
  });

  it('isolates a bad tenant: the others persist, its ids are logged again and stay pending, the old segments go', async () => {
    const w = await worker();
    mkdirSync(tenantFilePath(db, 'broken'));
    await accept(w, 'broken', 'x', 'y');
    await accept(w, 'fine', 'z');
    const sealedBefore = await listSegments(w.walFolder);
    const round = await w.persister.persistNow();
    // Not ok, and only the good tenant's id counts as persisted, though the old segments go.
    expect(round).toMatchObject({ ok: false, tenants: 2, ids: 1, failedTenants: 1 });
    expect(await w.store.count('fine')).toBe(1);
    expect(w.pending.ids).toBe(2);
    // The log holds only what is unpersisted: the broken tenant's ids, in a newer segment.
    const segments = await listSegments(w.walFolder);
    expect(segments.some((s) => sealedBefore.includes(s) && s < segments.at(-1)!)).toBe(false);
    const replay = new Pending();
    await replaySegments(w.walFolder, segments, replay);
    expect(replay.take()).toEqual(new Map([['broken', ['x', 'y']]]));
    // Once the operator moves the directory away, the next round persists them.
    rmSync(tenantFilePath(db, 'broken'), { recursive: true });
    expect(await w.persister.persistNow()).toMatchObject({ ok: true, tenants: 1, ids: 2, failedTenants: 0 });
    expect(await w.store.count('broken')).toBe(2);
    await w.wal.close();
  });

  it('reports a round where every tenant failed (a store that is down) as not ok, with no id persisted', async () => {
    const w = await worker();
    mkdirSync(tenantFilePath(db, 'down-1'));
    mkdirSync(tenantFilePath(db, 'down-2'));
    await accept(w, 'down-1', 'a', 'b');
    await accept(w, 'down-2', 'c');
    const round = await w.persister.persistNow();
    expect(round).toMatchObject({ ok: false, tenants: 2, ids: 0, failedTenants: 2 });
    expect(w.persister.lastRound).toBe(round); // what /status shows as lastPersist
    expect(w.pending.ids).toBe(3);
    // Once they can be written, the next round persists them all (and cancels its retry timer).
    rmSync(tenantFilePath(db, 'down-1'), { recursive: true });
    rmSync(tenantFilePath(db, 'down-2'), { recursive: true });
    expect(await w.persister.persistNow()).toMatchObject({ ok: true, tenants: 2, ids: 3, failedTenants: 0 });
    await w.wal.close();
  });

  // Rounds come at multiples of the interval by the wall clock: a day's interval puts the
  // next one at midnight UTC, so none runs during these tests.
  const DAY_MS = 86_400_000;
  const PUBLISH_MS = 500;

  it('between rounds, what is pending is published to the store every publishMs; the round is left to checkpoint and delete the log', async () => {
    const w = await worker('worker-1', DAY_MS, PUBLISH_MS);
    w.persister.start();
    try {
      await accept(w, 't', 'a', 'b');
      await accept(w, 'u', 'c');
      const accepted = performance.now();
      // The counts show as soon as the files are written; the publish ends a moment later.
      await waitFor(async () => (await w.store.count('t')) === 2 && (await w.store.count('u')) === 1 && w.persister.persistingIds() === 0, 10 * PUBLISH_MS, 'the publish persisted them');
      console.log(`[timing] pending ids published ${(performance.now() - accepted).toFixed(0)} ms after they were accepted (publishMs ${PUBLISH_MS})`);
      expect(w.pending.ids).toBe(0);
      expect(w.persister.persistingIds()).toBe(0);
      expect(w.persister.lastRound).toBeUndefined();
      // The log keeps them until a round has made the files durable.
      const kept = new Pending();
      await replaySegments(w.walFolder, await listSegments(w.walFolder), kept);
      expect(kept.take()).toEqual(new Map([['t', ['a', 'b']], ['u', ['c']]]));
      expect(await w.persister.persistNow()).toMatchObject({ ok: true, ids: 0 });
      const after = new Pending();
      await replaySegments(w.walFolder, await listSegments(w.walFolder), after);
      expect(after.ids).toBe(0);
    } finally {
      await w.persister.close();
      await w.wal.close();
    }
  });

  it('leaves a tenant whose persist failed to the rounds: publishes do not log it again and again', async () => {
    const w = await worker('worker-1', DAY_MS, PUBLISH_MS);
    mkdirSync(tenantFilePath(db, 'broken'));
    w.persister.start();
    try {
      await accept(w, 'broken', 'x');
      await accept(w, 'fine', 'y');
      await waitFor(async () => (await w.store.count('fine')) === 1, 10 * PUBLISH_MS, 'a publish persisted the good tenant');
      await accept(w, 'fine', 'z');
      await waitFor(async () => (await w.store.count('fine')) === 2, 10 * PUBLISH_MS, 'a later publish persisted the next id');
      // Several publishes later: the broken tenant's id was logged once by the batch and
      // once again by the publish that failed it, not once per publish.
      const replay = new Pending();
      await replaySegments(w.walFolder, await listSegments(w.walFolder), replay);
      expect(replay.take().get('broken')).toEqual(['x', 'x']);
      expect(w.pending.ids).toBe(1);
      // A round still tries it, and succeeds once the directory is gone.
      rmSync(tenantFilePath(db, 'broken'), { recursive: true });
      expect(await w.persister.persistNow()).toMatchObject({ ok: true, failedTenants: 0 });
      expect(await w.store.count('broken')).toBe(1);
    } finally {
      await w.persister.close();
      await w.wal.close();
    }
  });

  it('rebuilds a lost log from memory and writes back the tenant files deleted with it', async () => {
    const w = await worker();
    await accept(w, 'kept', 'a');
    await w.persister.persistNow();
    await accept(w, 'pending', 'b', 'c');
    rmSync(db, { recursive: true, force: true }); // rm -rf db/ while it runs
    await expect(accept(w, 'refused', 'x')).rejects.toThrow(/deleted or moved/);
    await w.persister.recoverSoon();
    await accept(w, 'after', 'd');
    expect(await w.store.count('kept')).toBe(1); // written back from memory
    const replay = new Pending();
    await replaySegments(w.walFolder, await listSegments(w.walFolder), replay);
    expect(replay.take()).toEqual(new Map([['pending', ['b', 'c']], ['after', ['d']]]));
    await w.persister.persistNow();
    expect(await w.store.count('pending')).toBe(2);
    expect(await w.store.count('refused')).toBe(0);
    await w.wal.close();
  });

  it('adopts the log of a worker that is not running, and deletes it once its ids are safe', async () => {
    const dead = await worker('worker-dead');
    await accept(dead, 'orphan', 'a', 'b');
    await dead.wal.close(); // it "died": its log stays, nobody holds its lock
    const w = await worker();
    const round = await w.persister.persistNow();
    expect(round.adopted).toBe(1);
    expect(await w.store.count('orphan')).toBe(2);
    expect(readdirSync(path.join(db, '.wal'))).toEqual(['worker-1']);
    await w.wal.close();
  });

  it('a stop whose time is up keeps the log segments that hold what failed, and does not log those ids again', async () => {
    const w = await worker();
    await accept(w, 't', 'a', 'b');
    await accept(w, 'u', 'c');
    const round = await w.persister.close(Date.now() - 1); // the stop's time is up already: every merge fails
    expect(round).toMatchObject({ ok: false, failedTenants: 2 });
    expect(w.pending.ids).toBe(3); // still counted as not persisted
    expect(await w.store.count('t')).toBe(0);
    // The log holds each id once: the two batches as they came, no re-logged copy.
    const kept = new Pending();
    const { records } = await replaySegments(w.walFolder, await listSegments(w.walFolder), kept);
    expect(records).toBe(2);
    expect(kept.take()).toEqual(new Map([['t', ['a', 'b']], ['u', ['c']]]));
    await w.wal.close();
  });

  it('does not probe the log of a worker the membership lists as live, and adopts it once it is no longer listed', async () => {
    const dead = await worker('worker-dead');
    await accept(dead, 'orphan', 'a', 'b');
    await dead.wal.close(); // its lock is free, but the coordinator has not dropped it from the membership yet
    const live = new Set(['worker-1', 'worker-dead']);
    const w = await worker('worker-1', 60_000, 0, (id) => live.has(id));
    expect((await w.persister.persistNow()).adopted).toBe(0);
    expect(await w.store.count('orphan')).toBe(0);
    expect(readdirSync(path.join(db, '.wal')).sort()).toEqual(['worker-1', 'worker-dead']);
    live.delete('worker-dead');
    expect((await w.persister.persistNow()).adopted).toBe(1);
    expect(await w.store.count('orphan')).toBe(2);
    expect(readdirSync(path.join(db, '.wal'))).toEqual(['worker-1']);
    await w.wal.close();
  });
});
