import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { shardOf } from '../../worker/store/shards.js';
import { everyWorkerCounts, expectSanityCase, isAlive, locksUnder, startCluster, stopAllClusters, waitFor } from '../helpers/cluster.js';
import { Ledger, postUntil } from '../helpers/ledger.js';
import { readmeFigure } from '../helpers/readme.js';
import { generous, reportTiming } from '../helpers/slow-machine.js';

afterEach(stopAllClusters);

/** The margin over `worker_persist` within which the README promises every worker counts an acknowledged item. */
const CONVERGENCE_MARGIN_S = readmeFigure(/counted by every worker within `worker_persist` \+ \*\*([\d.]+) s\*\*/);

describe('a real cluster', () => {
  it("passes the original's sanity case: t1 counts 2 on every worker", async () => {
    const cluster = await startCluster({ workers: 4 });
    await expectSanityCase(cluster);
    expect(await cluster.count('t1')).toBe(2);
    const segment = await cluster.request(`/items/t1/count`);
    expect(segment.body).toEqual({ count: 2 });
  });

  it('counts duplicates across batches and workers once', async () => {
    const cluster = await startCluster({ workers: 3 });
    const batch = Array.from({ length: 50 }, (_, i) => ({ id: `id-${i % 20}`, tenant: i % 2 ? 'odd' : 'even' }));
    // The same batch through the coordinator several times and straight to every worker.
    for (let i = 0; i < 3; i++) expect((await cluster.post(batch)).status).toBe(200);
    for (const url of cluster.workerUrls) expect((await cluster.post(batch, url)).status).toBe(200);
    await everyWorkerCounts(cluster, 'even', 10, 5_000);
    await everyWorkerCounts(cluster, 'odd', 10, 5_000);
    // Every worker had every id pending; once all have persisted, the tenant file holds each id once.
    await waitFor(async () => {
      const health = await Promise.all(cluster.workerUrls.map((url) => cluster.request('/', {}, url)));
      return health.every((res) => res.body.pending === 0);
    }, 5_000, 'every worker to persist');
    // Each tenant's file has one writer, its shard's owner: the other workers handed their
    // ids over, and no hand-over fell back to writing the file itself.
    const stores = await Promise.all(cluster.workerUrls.map(async (url) => (await cluster.request('/', {}, url)).body.store as { handoffsSent: number; handoffsFailed: number }));
    expect(stores.reduce((sum, store) => sum + store.handoffsSent, 0)).toBeGreaterThan(0);
    expect(stores.map((store) => store.handoffsFailed)).toEqual(stores.map(() => 0));
    const ids = readFileSync(tenantFilePath(path.join(cluster.dir, 'db'), 'even'), 'utf8')
      .split('\n').filter(Boolean).flatMap((line) => [JSON.parse(line)].flat().filter((v) => typeof v === 'string'));
    expect(ids.sort()).toEqual([...new Set(ids)].sort());
    expect(new Set(ids).size).toBe(10);
  });

  it('converges on every worker within worker_persist plus the margin the README states, idle and under load', async () => {
    const persist = 1;
    const promised = persist + CONVERGENCE_MARGIN_S;
    const cluster = await startCluster({ workers: 4, config: { worker_persist: persist } });
    const sample = async (tenant: string, writer: string): Promise<number> => {
      expect((await cluster.post([{ id: 'x', tenant }], writer)).status).toBe(200);
      const acked = Date.now();
      await everyWorkerCounts(cluster, tenant, 1, (generous(promised) + 5) * 1000);
      return (Date.now() - acked) / 1000;
    };
    const idle: number[] = [];
    for (let i = 0; i < 5; i++) idle.push(await sample(`conv-${i}`, cluster.workerUrls[i % cluster.workerUrls.length]!));
    // The same while two clients keep posting 20-item batches over other tenants through the coordinator.
    const loaded: number[] = [];
    let stop = false;
    const load = postUntil(cluster, new Ledger(), { clients: 2, until: Date.now() + 120_000, tenants: ['bg-1', 'bg-2', 'bg-3'], prefix: 'bg', batch: 20, stop: () => stop });
    try {
      for (let i = 0; i < 5; i++) loaded.push(await sample(`conv-load-${i}`, cluster.workerUrls[i % cluster.workerUrls.length]!));
    } finally {
      stop = true;
      await load;
    }
    reportTiming(`convergence on all 4 workers after the 200 (worker_persist ${persist} s), idle`, idle, promised, 's');
    reportTiming(`convergence on all 4 workers after the 200 (worker_persist ${persist} s), under load`, loaded, promised, 's');
    expect(Math.max(...idle, ...loaded)).toBeLessThan(generous(promised));
  });

  it('publishes acknowledged ids between persist rounds: every worker counts them long before the round, and the log keeps them until it', async () => {
    // Rounds come at multiples of worker_persist by the wall clock: with an hour, none runs
    // during the test; the default worker_publish (0.5 s) applies.
    const publish = 0.5;
    const cluster = await startCluster({ workers: 3, config: { worker_persist: 3600 } });
    const writer = cluster.workerUrls[0]!;
    const samples: number[] = [];
    for (let i = 0; i < 3; i++) {
      expect((await cluster.post([{ id: 'a', tenant: `published-${i}` }, { id: 'b', tenant: `published-${i}` }], writer)).status).toBe(200);
      const acked = Date.now();
      await everyWorkerCounts(cluster, `published-${i}`, 2, generous(publish + 1) * 1000);
      samples.push((Date.now() - acked) / 1000);
    }
    reportTiming('every worker counts a batch after its 200, worker_persist 3600 s, worker_publish 0.5 s', samples, publish + 1, 's');
    const health = (await cluster.request('/', {}, writer)).body;
    expect(health.pending).toBe(0);
    expect(health.lastPersist).toBeUndefined(); // no round has run
    // The write-ahead log still holds the batches: only a round, after its sync, deletes it.
    const walFolder = path.join(cluster.dir, 'db', '.wal', `worker-${new URL(writer).port}`);
    const logged = readdirSync(walFolder).filter((name) => name.endsWith('.log')).map((name) => readFileSync(path.join(walFolder, name), 'utf8')).join('');
    for (let i = 0; i < 3; i++) expect(logged).toContain(`"tenant":"published-${i}"`);
  });

  it('adds a worker when the config gains one, and removes one gracefully after it persisted', async () => {
    const cluster = await startCluster({ workers: 3, config: { worker_persist: 60, worker_publish: 0 } });
    const [first, second, third] = cluster.workerUrls as [string, string, string];
    const before = await cluster.status();
    const removedPid = before.workers.find((w) => w.url === third)!.pid!;
    // Items only the removed worker has, still pending there (worker_persist is long).
    expect((await cluster.post([{ id: 'a', tenant: 'moving' }, { id: 'b', tenant: 'moving' }], third)).status).toBe(200);

    cluster.writeConfig({ workers: [first, second] });
    await waitFor(() => !isAlive(removedPid), 15_000, 'the removed worker to exit');
    expect(readFileSync(path.join(cluster.dir, 'logs', `worker-${new URL(third).port}.log`), 'utf8')).toMatch(/stopped; everything persisted/);
    // It persisted before exiting, so the others count its items.
    await everyWorkerCounts(cluster, 'moving', 2, 5_000, [first, second]);
    expect(existsSync(path.join(cluster.dir, 'db', '.wal', `worker-${new URL(third).port}`))).toBe(false);

    // Put it back: a new process that serves.
    cluster.writeConfig({ workers: [first, second, third] });
    await cluster.waitReady(15_000);
    const after = await cluster.status();
    const readded = after.workers.find((w) => w.url === third)!;
    expect(readded.state).toBe('up');
    expect(readded.pid).not.toBe(removedPid);
    expect((await cluster.post([{ id: 'c', tenant: 'moving' }], third)).status).toBe(200);
    // It answers counts from the tenant file: the two persisted ids, not yet its own pending one.
    expect(await cluster.count('moving', third)).toBe(2);
  });

  it('keeps serving with a broken config, says which key is wrong, and applies the fixed one', async () => {
    const cluster = await startCluster({ workers: 2 });
    cluster.writeConfigText('port: [unclosed\nworkers: {');
    await waitFor(() => /rejected.*not valid YAML/i.test(cluster.output()), 10_000, 'the YAML error in the log');
    cluster.writeConfig({ worker_persist: 'abc' });
    await waitFor(() => /worker_persist.*'abc'/.test(cluster.output()), 10_000, 'the bad key in the log');
    expect((await cluster.post([{ id: '1', tenant: 'still' }])).status).toBe(200);
    await everyWorkerCounts(cluster, 'still', 1, 5_000);
    const status = await cluster.status();
    expect(status.workers.every((w) => w.state === 'up')).toBe(true);

    // A valid edit that adds a worker is applied.
    const extra = cluster.workerUrls[1]!.replace(/:(\d+)$/, (_, port) => `:${Number(port) + 1}`);
    cluster.writeConfig({ workers: [...cluster.workerUrls, extra] });
    await cluster.waitReady(15_000);
    expect((await cluster.status()).workers).toHaveLength(3);
  });

  it('applies changed timings and durability without a restart', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 60, worker_publish: 0 } });
    const [a, b] = cluster.workerUrls as [string, string];
    const pids = await cluster.workerPids();
    expect((await cluster.post([{ id: '1', tenant: 'timing' }], a)).status).toBe(200);
    // With a persist a minute away, the other worker does not see it yet.
    expect(await cluster.count('timing', b)).toBe(0);
    cluster.writeConfig({ worker_persist: 0.5, durability: 'write' });
    await everyWorkerCounts(cluster, 'timing', 1, 10_000);
    await waitFor(async () => (await cluster.request('/', {}, a)).body.durability === 'write', 5_000, 'the new durability in force');
    expect(await cluster.workerPids()).toEqual(pids); // same processes
  });

  it('respawns a worker killed with SIGKILL, which recovers what it had acknowledged', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 60, worker_publish: 0 } });
    const victim = cluster.workerUrls[0]!;
    expect((await cluster.post([{ id: 'k1', tenant: 'killed' }, { id: 'k2', tenant: 'killed' }], victim)).status).toBe(200);
    const pid = (await cluster.status()).workers.find((w) => w.url === victim)!.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => {
      const worker = (await cluster.status()).workers.find((w) => w.url === victim)!;
      return worker.state === 'up' && worker.pid !== pid;
    }, 15_000, 'the killed worker to be respawned');
    // Its log was replayed into the tenant file at start: every worker counts the items.
    await everyWorkerCounts(cluster, 'killed', 2, 5_000);
    expect(cluster.output()).toMatch(/worker-\d+ exited unexpectedly/);
  });

  it('kills and respawns a hung worker (SIGSTOP), serving from the others meanwhile', async () => {
    const cluster = await startCluster({ workers: 2, config: { health_check: 0.5, forward_timeout: 1, forward_deadline: 5 } });
    const [hung, healthy] = cluster.workerUrls as [string, string];
    const pid = (await cluster.status()).workers.find((w) => w.url === hung)!.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      // Requests keep being answered by the healthy worker while the hung one times out.
      for (let i = 0; i < 5; i++) expect((await cluster.post([{ id: `h${i}`, tenant: 'hung' }])).status).toBe(200);
      await waitFor(async () => {
        const worker = (await cluster.status()).workers.find((w) => w.url === hung)!;
        return worker.state === 'up' && worker.pid !== pid;
      }, 20_000, 'the hung worker to be replaced');
    } finally {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    expect(cluster.output()).toMatch(/looks hung, killing it/);
    await everyWorkerCounts(cluster, 'hung', 5, 5_000, [hung, healthy]);
  });

  it('SIGINT to the coordinator stops every worker and leaves no process and no lock', async () => {
    const cluster = await startCluster({ workers: 3, config: { worker_persist: 60, worker_publish: 0 } });
    expect((await cluster.post([{ id: '1', tenant: 'bye' }, { id: '2', tenant: 'bye' }])).status).toBe(200);
    const pids = await cluster.workerPids();
    expect(await cluster.stop('SIGINT')).toBe(0);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(locksUnder(cluster.dir)).toEqual([]);
    // Everything was persisted on the way out, and the write-ahead logs are gone.
    expect(readdirSync(path.join(cluster.dir, 'db', '.wal'))).toEqual([]);
    await cluster.restart();
    expect(await cluster.count('bye')).toBe(2);
  });

  it('the shard locks of a SIGKILLed worker are removed at the next clean stop, even for shards nobody writes again', async () => {
    // lock_stale 60: nothing takes the left locks over as stale during the test.
    const cluster = await startCluster({ workers: 2, config: { lock_stale: 60 } });
    const tenants = Array.from({ length: 40 }, (_, i) => `shard-spread-${i}`);
    expect((await cluster.post(tenants.map((tenant) => ({ id: 'x', tenant })))).status).toBe(200);
    const shards = new Set(tenants.map(shardOf)).size;
    await waitFor(() => locksUnder(cluster.dir).length === shards, 10_000, 'the owners to hold the locks of every shard written');
    // Killed with an empty log: nothing of it is adopted, so nothing waits for its locks to go stale.
    const victimUrl = cluster.workerUrls[0]!;
    await waitFor(async () => {
      const { body } = await cluster.request('/', {}, victimUrl);
      return body.pending === 0 && body.persisting === 0 && body.walBytes === 0;
    }, 10_000, 'the worker to have persisted everything and emptied its log');
    const victim = (await cluster.status()).workers.find((w) => w.url === victimUrl)!.pid;
    process.kill(victim!, 'SIGKILL');
    await waitFor(async () => {
      const workers = (await cluster.status()).workers;
      return workers.every((w) => w.state === 'up') && !workers.some((w) => w.pid === victim);
    }, 20_000, 'the killed worker to be respawned');
    expect(await cluster.stop('SIGINT')).toBe(0);
    expect(locksUnder(cluster.dir)).toEqual([]);
    expect(cluster.output()).toMatch(/removed \d+ shard lock\(s\) left by workers that were killed/);
    await cluster.restart();
    for (const tenant of tenants) expect(await cluster.count(tenant)).toBe(1);
  });

  it('Ctrl-C to the whole process group stops everything cleanly too', async () => {
    const cluster = await startCluster({ workers: 2 });
    expect((await cluster.post([{ id: '1', tenant: 'group' }])).status).toBe(200);
    const pids = await cluster.workerPids();
    expect(await cluster.stop('SIGINT', { group: true })).toBe(0);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(locksUnder(cluster.dir)).toEqual([]);
  });

  it('workers persist and exit on their own when the coordinator dies', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 60, worker_publish: 0 } });
    const target = cluster.workerUrls[1]!;
    expect((await cluster.post([{ id: 'orphan', tenant: 'o' }], target)).status).toBe(200);
    const pids = await cluster.workerPids();
    process.kill(cluster.pid, 'SIGKILL');
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 15_000, 'the workers to exit after the coordinator died');
    const log = readFileSync(path.join(cluster.dir, 'logs', `worker-${new URL(target).port}.log`), 'utf8');
    expect(log).toMatch(/the coordinator went away/);
    expect(log).toMatch(/stopped; everything persisted/);
    expect(readFileSync(tenantFilePath(path.join(cluster.dir, 'db'), 'o'), 'utf8')).toContain('"orphan"');
  });
});
