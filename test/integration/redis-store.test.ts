import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { tenantKey } from '../../worker/store/redis.js';
import { everyWorkerCounts, expectSanityCase, startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { killWorkersUntil } from '../helpers/killer.js';
import { Ledger, postUntil } from '../helpers/ledger.js';
import { seededRandom } from '../helpers/random.js';
import { redisCount, redisUnavailable, startRedis, startRedisCluster, stopAllRedis } from '../helpers/redis.js';
import { generous, reportTiming } from '../helpers/slow-machine.js';

/**
 * The real-cluster checks against the Redis store: a redis-server (and a 3-master Redis
 * Cluster) started here on free ports, in temp folders, stopped by pid afterwards.
 */
const unavailable = redisUnavailable();
if (unavailable !== undefined) console.log(`[skip] Redis store tests: ${unavailable}`);

afterEach(async () => {
  await stopAllClusters();
  await stopAllRedis();
});

/** Every worker's count of every tenant the ledger knows equals what was acknowledged (polling until it does), then the ledger's check. */
async function settle(cluster: Cluster, ledger: Ledger, timeoutMs: number): Promise<{ lost: number; overCounted: number; seconds: number }> {
  const started = Date.now();
  await cluster.waitReady(30_000);
  await waitFor(async () => {
    for (const [tenant, ids] of ledger.acked) {
      const counts = await Promise.all(cluster.workerUrls.map((url) => cluster.count(tenant, url)));
      if (counts.some((count) => count !== ids.size)) return false;
    }
    return true;
  }, timeoutMs, 'every worker to count exactly what was acknowledged').catch(() => {});
  const { lost, overCounted } = await ledger.check(cluster);
  return { lost, overCounted, seconds: (Date.now() - started) / 1000 };
}

async function countsOf(cluster: Cluster, tenants: Iterable<string>): Promise<Map<string, number[]>> {
  const counts = new Map<string, number[]>();
  for (const tenant of tenants) counts.set(tenant, await Promise.all(cluster.workerUrls.map((url) => cluster.count(tenant, url))));
  return counts;
}

describe.skipIf(unavailable !== undefined)('a cluster on one Redis node', () => {
  it("passes the original's sanity case: t1 counts 2 on every worker, and Redis holds the set", async () => {
    const redis = await startRedis();
    const cluster = await startCluster({ workers: 4, config: { store: redis.url } });
    await expectSanityCase(cluster);
    expect((await cluster.request('/items/t1/count')).body).toEqual({ count: 2 });
    expect(await redisCount(redis, tenantKey('t1'))).toBe(2);
    const health = await cluster.request('/', {}, cluster.workerUrls[0]);
    expect(health.body.store).toMatchObject({ kind: 'redis', reachable: true, appendonly: 'yes', appendfsync: 'everysec' });
  });

  it('a Redis password in the URL works, and no page shows it: /status and the workers mask it as in the logs', async () => {
    const redis = await startRedis();
    const password = 'pw-that-must-not-show';
    await redis.cli('CONFIG', 'SET', 'requirepass', password);
    const url = redis.url.replace('redis://', `redis://:${password}@`);
    const cluster = await startCluster({ workers: 2, config: { store: url } });
    await expectSanityCase(cluster);
    const status = await cluster.request('/status');
    expect(status.status).toBe(200);
    expect(JSON.stringify(status.body)).not.toContain(password);
    expect(status.body.config.store.urls).toEqual([redis.url.replace('redis://', 'redis://:***@')]);
    for (const worker of cluster.workerUrls) expect(JSON.stringify((await cluster.request('/', {}, worker)).body)).not.toContain(password);
    expect(cluster.output()).not.toContain(password);
  });

  it('counts duplicates across batches and workers once; any tenant string is its own key', async () => {
    const redis = await startRedis();
    const cluster = await startCluster({ workers: 3, config: { store: redis.url } });
    const batch = Array.from({ length: 50 }, (_, i) => ({ id: `id-${i % 20}`, tenant: i % 2 ? 'odd' : 'even' }));
    for (let i = 0; i < 3; i++) expect((await cluster.post(batch)).status).toBe(200);
    for (const url of cluster.workerUrls) expect((await cluster.post(batch, url)).status).toBe(200);
    await everyWorkerCounts(cluster, 'even', 10, 5_000);
    await everyWorkerCounts(cluster, 'odd', 10, 5_000);
    expect(await redisCount(redis, tenantKey('even'))).toBe(10);
    // Tenants that differ only in what a key encoding could confuse stay apart.
    const tricky = ['{a}', '%7Ba%7D', 'a}', '{', '}', '%', '../x', 'ü', 'a'.repeat(256)];
    expect((await cluster.post(tricky.map((tenant, i) => ({ id: `x${i}`, tenant })))).status).toBe(200);
    expect((await cluster.post(tricky.map((tenant) => ({ id: 'same', tenant })))).status).toBe(200);
    for (const tenant of tricky) await everyWorkerCounts(cluster, tenant, 2, 5_000);
    expect(new Set(tricky.map(tenantKey)).size).toBe(tricky.length);
  });

  it('converges on every worker within worker_persist plus a small margin', async () => {
    const redis = await startRedis();
    const persist = 1;
    const promised = persist + 1;
    const cluster = await startCluster({ workers: 4, config: { store: redis.url, worker_persist: persist } });
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const tenant = `conv-${i}`;
      expect((await cluster.post([{ id: 'x', tenant }], cluster.workerUrls[i % 4])).status).toBe(200);
      const acked = Date.now();
      await everyWorkerCounts(cluster, tenant, 1, (generous(promised) + 5) * 1000);
      samples.push((Date.now() - acked) / 1000);
    }
    reportTiming(`Redis store: convergence on all 4 workers after the 200 (worker_persist ${persist} s)`, samples, promised, 's');
    expect(Math.max(...samples)).toBeLessThan(generous(promised));
  });

  it('config edits: a removed worker persists to Redis before it exits, an added one serves, timings change without a restart', async () => {
    const redis = await startRedis();
    const cluster = await startCluster({ workers: 3, config: { store: redis.url, worker_persist: 60, worker_publish: 0 } });
    const [first, second, third] = cluster.workerUrls as [string, string, string];
    expect((await cluster.post([{ id: 'a', tenant: 'moving' }, { id: 'b', tenant: 'moving' }], third)).status).toBe(200);
    // A persist is a minute away: the others do not count it yet.
    expect(await cluster.count('moving', first)).toBe(0);
    cluster.writeConfig({ workers: [first, second] });
    await waitFor(() => /stopped; everything persisted/.test(readFileSync(cluster.workerLogFile(third), 'utf8')), 15_000, 'the removed worker to persist and stop');
    await everyWorkerCounts(cluster, 'moving', 2, 5_000, [first, second]);

    cluster.writeConfig({ workers: [first, second, third] });
    await cluster.waitReady(15_000);
    expect(await cluster.count('moving', third)).toBe(2);
    expect((await cluster.post([{ id: 'c', tenant: 'moving' }], first)).status).toBe(200);
    cluster.writeConfig({ workers: [first, second, third], worker_persist: 0.5 });
    await everyWorkerCounts(cluster, 'moving', 3, 10_000);
  });

  it('a Redis outage: counts answer 503 storage_unavailable, batches are still acknowledged, and everything is counted once Redis is back', async () => {
    const redis = await startRedis();
    const cluster = await startCluster({ workers: 2, config: { store: redis.url } });
    expect((await cluster.post([{ id: 'before', tenant: 'outage' }])).status).toBe(200);
    await everyWorkerCounts(cluster, 'outage', 1, 5_000);

    await redis.stop();
    await waitFor(async () => (await cluster.request('/items/outage/count')).status === 503, 10_000, 'counts to answer 503');
    const refused = await cluster.request('/items/outage/count');
    expect(refused.body.error.code).toBe('storage_unavailable');
    expect(refused.body.error.message).toMatch(/Redis at redis:\/\/127\.0\.0\.1:\d+ is unreachable/);
    const during = Array.from({ length: 20 }, (_, i) => ({ id: `during-${i}`, tenant: 'outage' }));
    expect((await cluster.post(during)).status).toBe(200);
    expect((await cluster.post(during.slice(0, 5), cluster.workerUrls[1])).status).toBe(200);
    await sleep(1500); // a persist round or two fail meanwhile
    // Nothing lost meanwhile: the ids wait in the workers' memory and logs.
    const waiting = await Promise.all(cluster.workerUrls.map(async (url) => {
      const { body } = await cluster.request('/', {}, url);
      return body.pending + body.persisting;
    }));
    expect(waiting.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(20);

    const back = Date.now();
    await redis.start();
    await everyWorkerCounts(cluster, 'outage', 21, (generous(2) + 5) * 1000);
    reportTiming('Redis store: every worker counts what waited, after Redis came back', (Date.now() - back) / 1000, 2, 's');
    const logs = cluster.workerUrls.map((url) => readFileSync(cluster.workerLogFile(url), 'utf8')).join('\n');
    expect(logs).toMatch(/is unreachable .*reconnecting/);
    expect(logs).toMatch(/is reachable again/);
  });

  it('SIGKILL chaos, config edits and a Redis restart under load: lost 0, over-counted 0; a full restart keeps the counts', async () => {
    const seed = Date.now() % 100_000;
    const next = seededRandom(seed);
    const redis = await startRedis();
    const cluster = await startCluster({ workers: 4, config: { store: redis.url, kill_timeout: 3 } });
    const all = [...cluster.workerUrls];
    const ledger = new Ledger();
    const tenants = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
    const seconds = 14;
    const until = Date.now() + seconds * 1000;
    let redisRestarts = 0;
    const [kills] = await Promise.all([
      killWorkersUntil(cluster, { stopBy: until - 1000, next }),
      postUntil(cluster, ledger, { clients: 6, until, tenants, prefix: 'chaos' }),
      (async () => {
        await sleep(seconds * 250);
        cluster.writeConfig({ workers: all.slice(0, 3) });
        await sleep(seconds * 250);
        await redis.stop(); // graceful: Redis writes and fsyncs its AOF
        await sleep(500);
        await redis.start();
        redisRestarts++;
        cluster.writeConfig({ workers: [all[3]!, ...all.slice(1, 3)] });
        await sleep(seconds * 250);
        cluster.writeConfig({ workers: all });
      })(),
    ]);
    const result = await settle(cluster, ledger, 30_000);
    console.log(`redis chaos (seed ${seed}): ${ledger.summary()}; lost ${result.lost}; over-counted ${result.overCounted}; ${kills} SIGKILLs; 3 config edits; ${redisRestarts} Redis restart; settled in ${result.seconds.toFixed(2)} s`);
    expect(result.lost).toBe(0);
    expect(result.overCounted).toBe(0);
    expect(ledger.ok).toBeGreaterThan(0);

    const before = await countsOf(cluster, tenants);
    await cluster.restart();
    const after = await countsOf(cluster, tenants);
    expect(after).toEqual(before);
  }, 150_000);

  it('redis-server SIGKILLed mid-load with appendfsync always: lost 0', async () => {
    const redis = await startRedis({ appendfsync: 'always' });
    const cluster = await startCluster({ workers: 3, config: { store: redis.url } });
    const ledger = new Ledger();
    const until = Date.now() + 8000;
    await Promise.all([
      postUntil(cluster, ledger, { clients: 4, until, tenants: ['k1', 'k2', 'k3'], prefix: 'sigkill' }),
      (async () => {
        await sleep(3000);
        await redis.kill();
        await sleep(1000);
        await redis.start();
      })(),
    ]);
    const result = await settle(cluster, ledger, 30_000);
    console.log(`redis SIGKILL (appendfsync always): ${ledger.summary()}; lost ${result.lost}; over-counted ${result.overCounted}`);
    expect(result.lost).toBe(0);
    expect(result.overCounted).toBe(0);
  }, 90_000);

  it('a tenant whose key Redis refuses (WRONGTYPE) is isolated: logged, retried, the others persisted; persisted once the key is fixed', async () => {
    const redis = await startRedis();
    await redis.cli('set', tenantKey('broken'), 'not a set');
    const cluster = await startCluster({ workers: 1, config: { store: redis.url } });
    const [url] = cluster.workerUrls as [string];
    expect((await cluster.post([{ id: '1', tenant: 'broken' }, { id: '1', tenant: 'fine' }, { id: '2', tenant: 'fine' }])).status).toBe(200);
    await everyWorkerCounts(cluster, 'fine', 2, 5_000);
    await waitFor(() => /refused the ids of 1 of \d+ tenant\(s\) \(first: .*WRONGTYPE/.test(readFileSync(cluster.workerLogFile(url), 'utf8')), 5_000, 'the refusal in the log');
    const { body } = await cluster.request('/', {}, url);
    expect(body.pending + body.persisting).toBeGreaterThanOrEqual(1); // its id waits in the worker (and its log)
    expect((await cluster.request('/items/broken/count')).body.error.code).toBe('storage_unavailable');
    await redis.cli('del', tenantKey('broken'));
    await everyWorkerCounts(cluster, 'broken', 1, 10_000);
  });

  it('says clearly at start when Redis keeps no append-only file', async () => {
    const redis = await startRedis({ appendonly: 'no' });
    const cluster = await startCluster({ workers: 1, config: { store: redis.url } });
    await waitFor(() => /appendonly is no.*NOT durable/.test(readFileSync(cluster.workerLogFile(cluster.workerUrls[0]!), 'utf8')), 10_000, 'the warning in the worker log');
    // An error, not a warning: the guarantee of a durable 200 does not hold on such a Redis.
    const line = readFileSync(cluster.workerLogFile(cluster.workerUrls[0]!), 'utf8').split('\n').find((text) => text.includes('appendonly is no'));
    expect(JSON.parse(line!)).toMatchObject({ level: 'error', msg: expect.stringMatching(/appendonly is no.*NOT durable/) });
  });
});

describe.skipIf(unavailable !== undefined)('a cluster on a 3-master Redis Cluster', () => {
  it('sanity, duplicates, tenants spread over every master, SIGKILL chaos with lost 0, and a full restart keeps the counts', async () => {
    const seed = Date.now() % 100_000;
    const next = seededRandom(seed);
    const redisCluster = await startRedisCluster(3);
    const cluster = await startCluster({ workers: 3, config: { store: redisCluster.urls } });
    expect((await cluster.post([{ id: '1', tenant: 't1' }, { id: '2', tenant: 't2' }, { id: '2', tenant: 't3' }, { id: '4', tenant: 't1' }])).status).toBe(200);
    await everyWorkerCounts(cluster, 't1', 2, 5_000);
    const batch = Array.from({ length: 50 }, (_, i) => ({ id: `id-${i % 20}`, tenant: i % 2 ? 'odd' : 'even' }));
    for (const url of cluster.workerUrls) expect((await cluster.post(batch, url)).status).toBe(200);
    await everyWorkerCounts(cluster, 'even', 10, 5_000);

    const ledger = new Ledger();
    const tenants = Array.from({ length: 60 }, (_, i) => `spread-${i}`);
    const until = Date.now() + 10_000;
    const [kills] = await Promise.all([killWorkersUntil(cluster, { stopBy: until - 1000, next }), postUntil(cluster, ledger, { clients: 4, until, tenants, prefix: 'rc' })]);
    const result = await settle(cluster, ledger, 30_000);
    const perNode = await redisCluster.keysPerNode();
    console.log(`redis cluster chaos (seed ${seed}): ${ledger.summary()}; lost ${result.lost}; over-counted ${result.overCounted}; ${kills} SIGKILLs; keys per master ${perNode.join(', ')}`);
    expect(result.lost).toBe(0);
    expect(result.overCounted).toBe(0);
    expect(perNode.every((keys) => keys > 0)).toBe(true);

    const before = await countsOf(cluster, tenants.slice(0, 10));
    await cluster.restart();
    expect(await countsOf(cluster, tenants.slice(0, 10))).toEqual(before);
  }, 120_000);
});
