import { rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { Ledger, postUntil } from '../helpers/ledger.js';
import { killWorkersUntil } from '../helpers/killer.js';
import { seededRandom } from '../helpers/random.js';

afterEach(stopAllClusters);

const TENANT = 'mono';
const LOAD_SECONDS = 16;

/** The forms a reader asks in, in turn; `strong` ones may be refused (503) while a worker is down. */
const FORMS: ReadonlyArray<{ path: string; strong: boolean }> = [
  { path: `/items/${TENANT}/count`, strong: false },
  { path: `/items/count?tenant=${TENANT}`, strong: false },
  { path: `/counts?tenant=${TENANT}&tenant=other`, strong: false },
  { path: `/items/${TENANT}/count?consistency=strong`, strong: true },
];

/**
 * What a reader checks: every answer is at least the highest answer any client had
 * received before this request was sent (so not only one client's own sequence).
 */
class MonotonicCheck {
  highestReceived = 0;
  reads = 0;
  strongReads = 0;
  strongRefused = 0;
  readonly decreases: string[] = [];
  readonly errors = new Map<string, number>();

  async read(cluster: Cluster, form: { path: string; strong: boolean }): Promise<void> {
    const floor = this.highestReceived;
    let answer;
    try {
      answer = await cluster.request(form.path);
    } catch (err) {
      this.#error(`no answer: ${(err as Error).message}`);
      return;
    }
    if (answer.status !== 200) {
      if (form.strong && answer.body?.error?.code === 'strong_read_unavailable') this.strongRefused++;
      else this.#error(`${answer.status} ${answer.body?.error?.code ?? ''}`);
      return;
    }
    const count: unknown = answer.body.count ?? answer.body.counts?.[TENANT];
    if (typeof count !== 'number') {
      this.#error(`bad body ${JSON.stringify(answer.body)}`);
      return;
    }
    this.reads++;
    if (form.strong) this.strongReads++;
    if (count < floor) this.decreases.push(`${form.path} answered ${count} after ${floor} had been received`);
    if (count > this.highestReceived) this.highestReceived = count;
  }

  #error(what: string): void {
    this.errors.set(what, (this.errors.get(what) ?? 0) + 1);
  }
}

describe('counts through the coordinator never go down', () => {
  it('for readers hammering one tenant while writers add ids, workers are SIGKILLed and the config changes', async () => {
    const seed = Date.now() % 100_000;
    const next = seededRandom(seed);
    const cluster = await startCluster({ workers: 4, config: { worker_persist: 1, kill_timeout: 3, lock_stale: 2 } });
    const all = [...cluster.workerUrls];
    const ledger = new Ledger();
    const check = new MonotonicCheck();
    const until = Date.now() + LOAD_SECONDS * 1000;
    let kills = 0;
    let edits = 0;

    const writers = postUntil(cluster, ledger, { clients: 3, until, tenants: [TENANT, TENANT, 'other'], prefix: 'w', batch: 10 });
    const readers = Promise.all([0, 1, 2, 3].map(async (reader) => {
      for (let i = reader; Date.now() < until; i++) await check.read(cluster, FORMS[i % FORMS.length]!);
    }));
    const killer = killWorkersUntil(cluster, { stopBy: until - 1500, next }).then((n) => {
      kills = n;
    });
    const editor = (async () => {
      const step = (LOAD_SECONDS * 1000) / 4;
      await sleep(step);
      cluster.writeConfig({ workers: all.slice(0, 3) }); // one removed (it persists and stops)
      edits++;
      await sleep(step);
      cluster.writeConfig({ workers: [all[3]!, ...all.slice(1, 3)], worker_persist: 0.5 }); // back, another removed, new timing
      edits++;
      await sleep(step);
      cluster.writeConfig({ workers: all, worker_persist: 1 });
      edits++;
    })();
    await Promise.all([writers, readers, killer, editor]);

    // Quiet now: a strong read counts exactly what was acknowledged, and still not less than before.
    await cluster.waitReady(30_000);
    const acked = ledger.acked.get(TENANT)?.size ?? 0;
    let final = -1;
    await waitFor(async () => {
      const answer = await cluster.request(`/items/${TENANT}/count?consistency=strong`);
      if (answer.status === 200) final = answer.body.count;
      return answer.status === 200;
    }, 30_000, 'a strong read to be answered once every worker is up');
    console.log(
      `[monotonic] seed ${seed}: ${check.reads} reads (${check.strongReads} strong, ${check.strongRefused} strong refused while a worker was down), ` +
        `largest count seen ${check.highestReceived}, ${check.decreases.length} decreases; ${kills} SIGKILLs, ${edits} config edits; ` +
        `writers: ${ledger.summary()}; final strong count ${final} (acknowledged ${acked}); other answers: ${JSON.stringify(Object.fromEntries(check.errors))}`,
    );
    expect(check.decreases).toEqual([]);
    expect(check.reads).toBeGreaterThan(100);
    expect(check.strongReads).toBeGreaterThan(0);
    expect(final).toBeGreaterThanOrEqual(check.highestReceived);
    expect(final).toBeGreaterThanOrEqual(acked);
    expect(final).toBeLessThanOrEqual(ledger.sent.get(TENANT)?.size ?? 0);
  });

  it('even when every worker answers less (a tenant file deleted by hand): the coordinator answers what it answered before', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 1 } });
    const batch = Array.from({ length: 5 }, (_, i) => ({ id: `g${i}`, tenant: 'gone' }));
    expect((await cluster.post(batch)).status).toBe(200);
    expect((await cluster.request('/items/gone/count?consistency=strong')).body).toEqual({ count: 5 });
    rmSync(tenantFilePath(path.join(cluster.dir, 'db'), 'gone'));
    // The workers read counts from the file, which is gone: they answer 0 now.
    for (const url of cluster.workerUrls) expect(await cluster.count('gone', url)).toBe(0);
    for (let i = 0; i < 20; i++) {
      expect((await cluster.request(i % 2 === 0 ? '/items/gone/count' : '/counts?tenant=gone')).body).toEqual(i % 2 === 0 ? { count: 5 } : { counts: { gone: 5 } });
    }
  });
});
