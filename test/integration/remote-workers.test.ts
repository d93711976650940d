import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify as toYaml, parse as parseYaml } from 'yaml';
import { membershipDigest } from '../../shared/ipc.js';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { Ledger, postUntil } from '../helpers/ledger.js';
import { freePorts } from '../helpers/ports.js';
import { redisUnavailable, startRedis, stopAllRedis } from '../helpers/redis.js';
import { startStandaloneWorker, stopAllStandaloneWorkers, type StandaloneWorker } from '../helpers/standalone-worker.js';
import { TempDirs } from '../helpers/temp-dir.js';

/**
 * Workers run by hand (`countapp worker`), on this machine's loopback with ports of their
 * own: the coordinator lists them as `{url, spawn: false}`, health-checks them, forwards to
 * them and sends them the membership, but never spawns or stops them.
 */
/** Temp folders of this file (secrets, the hosts' configs): removed after each test. */
const temp = new TempDirs();
const tempDir = (prefix: string): string => temp.make(prefix);

afterEach(async () => {
  await stopAllStandaloneWorkers();
  await stopAllClusters();
  await stopAllRedis();
  temp.removeAll();
});

/** A secret file readable by its owner only, in a temp folder of its own. */
function secretFile(): string {
  const file = path.join(tempDir('countapp-secret-'), 'secret');
  writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  return file;
}

async function statusRow(cluster: Cluster, url: string): Promise<{ state: string; local: boolean; pid: number | null }> {
  const row = (await cluster.status()).workers.find((worker) => worker.url === url);
  if (row === undefined) throw new Error(`${url} is not in the status`);
  return row as unknown as { state: string; local: boolean; pid: number | null };
}

/** The membership the coordinator announces now: its live workers, in config order. */
async function liveMembers(cluster: Cluster): Promise<{ id: string; url: string }[]> {
  return (await cluster.status()).workers.filter((worker) => worker.state === 'up').map((worker) => ({ id: worker.id, url: worker.url }));
}

async function everyWorkerCounts(cluster: Cluster, urls: readonly string[], tenant: string, expected: number, timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => (await Promise.all(urls.map((url) => cluster.count(tenant, url)))).every((count) => count === expected), timeoutMs, `every worker to count ${expected} for ${tenant}`);
}

describe('a worker run by hand on loopback', () => {
  it('files store, shared database: listed, not spawned, forwarded to, told the membership; SIGKILLed it is routed around and comes back by itself', async () => {
    const [port] = await freePorts(1);
    const url = `http://127.0.0.1:${port}`;
    const cluster = await startCluster({ workers: 2, config: { secret_file: secretFile() } });
    const spawned = [...cluster.workerUrls];
    cluster.writeConfig({ workers: [...spawned, { url, spawn: false }] });
    await waitFor(async () => (await cluster.status()).workers.length === 3, 10_000, 'the coordinator to list the new worker');
    expect(await statusRow(cluster, url)).toMatchObject({ local: false, pid: null });
    expect((await statusRow(cluster, url)).state).not.toBe('up'); // nobody runs it yet: the coordinator does not spawn it

    let worker: StandaloneWorker = await startStandaloneWorker({ configFile: cluster.configFile, port: port! });
    await waitFor(async () => (await statusRow(cluster, url)).state === 'up', 10_000, 'the coordinator to find it up');
    const all = [...spawned, url];
    // It is told the live membership over HTTP, as spawned workers are over IPC.
    await waitFor(async () => {
      const { body } = await cluster.request('/', {}, url);
      return body.membership === membershipDigest(await liveMembers(cluster)) && body.store.members === 3;
    }, 10_000, 'the worker run by hand to hold the membership');

    // The coordinator forwards to it: with the spawned workers gone from the config, it is the only one.
    expect((await cluster.post([{ id: 'a', tenant: 'by-hand' }, { id: 'b', tenant: 'by-hand' }], url)).status).toBe(200);
    await everyWorkerCounts(cluster, all, 'by-hand', 2);
    cluster.writeConfig({ workers: [{ url, spawn: false }] });
    await waitFor(async () => (await cluster.status()).workers.length === 1, 15_000, 'the spawned workers to be stopped');
    expect((await cluster.post([{ id: 'c', tenant: 'by-hand' }])).status).toBe(200);
    await waitFor(async () => (await cluster.count('by-hand')) === 3, 10_000, 'the coordinator to count it through the worker run by hand');
    cluster.writeConfig({ workers: [...spawned, { url, spawn: false }] });
    await cluster.waitReady(15_000);

    // Acknowledged, then SIGKILLed before its next persist could matter: its log keeps the ids.
    expect((await cluster.post([{ id: 'd', tenant: 'killed' }], url)).status).toBe(200);
    await worker.kill();
    await waitFor(async () => (await statusRow(cluster, url)).state === 'down', 10_000, 'the coordinator to see it down');
    for (let i = 0; i < 20; i++) expect((await cluster.post([{ id: `around-${i}`, tenant: 'around' }])).status).toBe(200);
    await everyWorkerCounts(cluster, spawned, 'around', 20);

    worker = await startStandaloneWorker({ configFile: cluster.configFile, port: port! });
    await waitFor(async () => (await statusRow(cluster, url)).state === 'up', 10_000, 'it to come back into rotation by itself');
    await everyWorkerCounts(cluster, all, 'killed', 1);
    await everyWorkerCounts(cluster, all, 'around', 20);
    await waitFor(async () => (await cluster.request('/', {}, url)).body.membership === membershipDigest(await liveMembers(cluster)), 10_000, 'the restarted worker to be told the membership again');

    const exit = await worker.stop('SIGTERM');
    expect(exit.code).toBe(0);
    expect(worker.output()).toMatch(/stopped; everything persisted/);
  }, 90_000);

  it('refuses clearly: no secret in the config, an entry the coordinator spawns, no entry with its port', async () => {
    const dir = tempDir('countapp-standalone-');
    const [port] = await freePorts(1);
    const file = path.join(dir, 'config.yaml');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ workers: [{ url: `http://127.0.0.1:${port}`, spawn: false }] }, /needs the cluster secret: set `secret_file`/],
      [{ workers: [`http://127.0.0.1:${port}`], secret_file: 'nope' }, /spawns itself; to run it by hand, write it as \{url: .*, spawn: false\}/],
      [{ workers: [`http://127.0.0.1:${port! + 1}`], secret_file: 'nope' }, new RegExp(`no \`workers\` entry of .* has port ${port}`)],
      [{ workers: [{ url: `http://127.0.0.1:${port}`, spawn: false }], secret_file: 'missing-secret' }, /cannot read the secret file .*missing-secret \(ENOENT\)/],
    ];
    for (const [config, message] of cases) {
      writeFileSync(file, toYaml({ port: port! + 10, database: 'db/', worker_logs: 'logs/', ...config }));
      const worker = await startStandaloneWorker({ configFile: file, port: port!, wait: false });
      expect((await worker.exited).code).toBe(1);
      expect(worker.output()).toMatch(message);
      expect(worker.output()).not.toMatch(/\n\s+at /); // no stack trace for a user's mistake
    }
  });
});

describe.skipIf(redisUnavailable() !== undefined)('workers run by hand on the Redis store', () => {
  it('two of them, each with its own database folder (as on two hosts): exact counts everywhere; one SIGKILLed under load is routed around, restarted, and nothing is lost', async () => {
    const redis = await startRedis();
    const [p1, p2] = await freePorts(2);
    const secret = secretFile();
    const cluster = await startCluster({ workers: 1, config: { store: redis.url, secret_file: secret } });
    const byHand = [{ url: `http://127.0.0.1:${p1}`, spawn: false }, { url: `http://127.0.0.1:${p2}`, spawn: false }];
    cluster.writeConfig({ workers: [...cluster.workerUrls, ...byHand] });
    // A copy of the config per "host", each with its own database and log folders.
    const hosts = [p1!, p2!].map((port) => {
      const dir = tempDir('countapp-host-');
      const file = path.join(dir, 'config.yaml');
      const config = parseYaml(readFileSync(cluster.configFile, 'utf8')) as Record<string, unknown>;
      writeFileSync(file, toYaml({ ...config, secret_file: secret, database: path.join(dir, 'db'), worker_logs: path.join(dir, 'logs') }));
      chmodSync(file, 0o600);
      return { port, file };
    });
    const workers = await Promise.all(hosts.map((host) => startStandaloneWorker({ configFile: host.file, port: host.port })));
    await waitFor(async () => (await cluster.status()).workers.filter((w) => w.state === 'up').length === 3, 15_000, 'all three workers up');
    const all = [cluster.workerUrls[0]!, ...byHand.map((entry) => entry.url)];

    const ledger = new Ledger();
    const until = Date.now() + 8000;
    let restarted: StandaloneWorker | undefined;
    await Promise.all([
      postUntil(cluster, ledger, { clients: 4, until, tenants: ['h1', 'h2', 'h3'], prefix: 'hosts' }),
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 2500));
        await workers[0]!.kill();
        await new Promise((resolve) => setTimeout(resolve, 2000));
        restarted = await startStandaloneWorker({ configFile: hosts[0]!.file, port: hosts[0]!.port });
      })(),
    ]);
    expect(restarted).toBeDefined();
    await waitFor(async () => (await cluster.status()).workers.filter((w) => w.state === 'up').length === 3, 15_000, 'the restarted worker back in rotation');
    for (const [tenant, ids] of ledger.acked) await everyWorkerCounts(cluster, all, tenant, ids.size, 20_000);
    const { lost, overCounted } = await ledger.check(cluster, all);
    console.log(`workers by hand on Redis: ${ledger.summary()}; lost ${lost}; over-counted ${overCounted}; one of them SIGKILLed and restarted`);
    expect(lost).toBe(0);
    expect(overCounted).toBe(0);
    expect(ledger.failed).toBe(0); // routed around: no client saw the dead worker
  }, 90_000);
});
