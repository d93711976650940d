import { mkdirSync, readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Logger } from '../../shared/log.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { FileStore } from '../../worker/store/files.js';
import { LocalMerges } from '../../worker/store/local-merges.js';
import { MAX_GATHER_MS, MergeGather, gatherWindowMs } from '../../worker/store/merge-gather.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

const log = new Logger('test');
let db: string;
let merges: LocalMerges;

beforeEach(() => {
  db = makeTempDir('countapp-gather-');
  merges = new LocalMerges({ database: db, log, staleMs: 2000 });
});
afterEach(async () => {
  await merges.close();
  removeTempDir(db);
});

/** The appends a tenant file holds: its lines after the header. */
function appendsOf(tenant: string): string[] {
  return readFileSync(tenantFilePath(db, tenant), 'utf8').split('\n').filter(Boolean).slice(1);
}

describe('MergeGather', () => {
  it('sends merges asked for within the window as one: one append per tenant file, each caller told its own share', async () => {
    const gather = new MergeGather(merges, () => 200);
    const started = performance.now();
    const outcomes = await Promise.all([
      gather.merge(new Map([['a', ['1', '2']], ['b', ['x']]])),
      gather.merge(new Map([['a', ['2', '3']]])),
      gather.merge(new Map([['b', ['y']], ['c', ['z']]])),
    ]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150); // it did wait for company
    expect(appendsOf('a')).toEqual(['["1","2","3",3]']);
    expect(appendsOf('b')).toEqual(['["x","y",2]']);
    expect(appendsOf('c')).toEqual(['["z",1]']);
    // The ids new to their files count once, all with the first caller.
    expect(outcomes.map((o) => o.written)).toEqual([6, 0, 0]);
    expect(outcomes.every((o) => o.failed.size === 0)).toBe(true);
  });

  it('sends an urgent merge at once, with the ones waiting for the window', async () => {
    const gather = new MergeGather(merges, () => 60_000);
    const waiting = gather.merge(new Map([['a', ['1']]]));
    const started = performance.now();
    const urgent = await gather.merge(new Map([['a', ['2']]]), { urgent: true });
    expect(performance.now() - started).toBeLessThan(10_000);
    expect((await waiting).failed.size).toBe(0);
    expect(urgent.failed.size).toBe(0);
    expect(appendsOf('a')).toEqual(['["1","2",2]']);
  });

  it('does not wait out the window for a merge with a stop deadline, nor after flush()', async () => {
    const gather = new MergeGather(merges, () => 60_000);
    await gather.merge(new Map([['a', ['1']]]), { stopBy: Date.now() + 5000 });
    const waiting = gather.merge(new Map([['a', ['2']]]));
    gather.flush();
    await waiting;
    expect(appendsOf('a')).toEqual(['["1",1]', '["2",2]']);
  });

  it('sends each merge alone when the window is 0', async () => {
    const gather = new MergeGather(merges, () => 0);
    await Promise.all([gather.merge(new Map([['a', ['1']]])), gather.merge(new Map([['a', ['2']]]))]);
    expect(appendsOf('a')).toHaveLength(2);
  });

  it('tells each caller the failures of its own tenants, with its own ids', async () => {
    mkdirSync(tenantFilePath(db, 'broken')); // a directory where the file should be
    const gather = new MergeGather(merges, () => 100);
    const [first, second] = await Promise.all([
      gather.merge(new Map([['broken', ['1']], ['fine', ['a']]])),
      gather.merge(new Map([['broken', ['2', '3']], ['other', ['b']]])),
    ]);
    expect([...first.failed.keys()]).toEqual(['broken']);
    expect(first.failed.get('broken')!.ids).toEqual(['1']);
    expect([...second.failed.keys()]).toEqual(['broken']);
    expect(second.failed.get('broken')!.ids).toEqual(['2', '3']);
    expect(appendsOf('fine')).toEqual(['["a",1]']);
    expect(appendsOf('other')).toEqual(['["b",1]']);
  });
});

describe('FileStore merges', () => {
  it('let ids handed over by other workers wait for company, and send the worker\'s own at once, taking the waiting ones along', async () => {
    const store = new FileStore({ database: db, workerId: 'worker-1', log, secret: () => 's', lockStaleMs: 2000, sync: () => false, handoffTimeoutMs: () => 1000, gatherMs: () => 60_000 });
    try {
      let handedOverDone = false;
      const handedOver = store.persist(new Map([['a', ['1']]]), { handedOver: true }).then((failed) => {
        handedOverDone = true;
        return failed;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(handedOverDone).toBe(false); // waiting for company (the window is a minute)
      const own = await store.persist(new Map([['a', ['2']], ['b', ['3']]]));
      expect(own.size).toBe(0);
      expect((await handedOver).size).toBe(0);
      expect(appendsOf('a')).toEqual(['["1","2",2]']);
      expect(await store.count('a')).toBe(2);
    } finally {
      await store.close();
    }
  });

  it('send what waits when a strong read persists, even one with no ids of its own', async () => {
    const store = new FileStore({ database: db, workerId: 'worker-1', log, secret: () => 's', lockStaleMs: 2000, sync: () => false, handoffTimeoutMs: () => 1000, gatherMs: () => 60_000 });
    try {
      const handedOver = store.persist(new Map([['a', ['1']]]), { handedOver: true });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = performance.now();
      await store.persist(new Map(), { visible: true });
      expect((await handedOver).size).toBe(0);
      expect(performance.now() - started).toBeLessThan(10_000); // not the minute of the window
      expect(await store.count('a')).toBe(1);
    } finally {
      await store.close();
    }
  });
});

describe('gatherWindowMs', () => {
  it('is a quarter of the interval at which hand-overs come, at most MAX_GATHER_MS', () => {
    expect(gatherWindowMs(1, 0.5)).toBe(MAX_GATHER_MS); // persist 1 s: no publishes (not more than twice the publish interval)
    expect(gatherWindowMs(0.2, 0)).toBe(50);
    expect(gatherWindowMs(5, 0.5)).toBe(125); // publishes every 0.5 s
    expect(gatherWindowMs(5, 0)).toBe(MAX_GATHER_MS);
    expect(gatherWindowMs(0, 0)).toBe(0);
  });
});
