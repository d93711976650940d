import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { netnsUnavailable, TestNetwork } from '../helpers/netns.js';
import { redisUnavailable, startRedis, stopAllRedis } from '../helpers/redis.js';
import { REPO_ROOT } from '../helpers/repo.js';
import { startStandaloneWorker, stopAllStandaloneWorkers, type StandaloneWorker } from '../helpers/standalone-worker.js';
import { TempDirs } from '../helpers/temp-dir.js';

/**
 * Workers on two "hosts": the coordinator, each worker and Redis in network namespaces
 * of their own (veth pairs on a bridge), so the workers reach Redis and the coordinator
 * reaches the workers over those namespaces' addresses, never loopback. Where namespaces
 * cannot be made (not root, no iproute2), the test says why it skipped.
 */
const skip = redisUnavailable() ?? netnsUnavailable();
if (skip !== undefined) console.log(`[skip] two-host test: ${skip}`);

let network: TestNetwork | undefined;
/** Temp folders of this file (secrets, the hosts' configs): removed after each test. */
const temp = new TempDirs();
const tempDir = (prefix: string): string => temp.make(prefix);

afterEach(async () => {
  await stopAllStandaloneWorkers();
  await stopAllClusters();
  await stopAllRedis();
  temp.removeAll();
  network?.remove();
  network = undefined;
});

interface Answer {
  readonly status: number;
  // `any`: the JSON answers of the routes.
  readonly body: any;
}

/** Requests made from inside `namespace` (the coordinator's host: a client there), by test/fixtures/http-requests.mjs. */
function requestsFrom(namespace: string, requests: { method?: string; url: string; body?: unknown }[], parallel = 1): Promise<Answer[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', namespace, process.execPath, path.join(REPO_ROOT, 'test/fixtures/http-requests.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      try {
        if (code !== 0) throw new Error(`the request client exited with code ${code}: ${stderr}`);
        resolve(JSON.parse(stdout) as Answer[]);
      } catch (err) {
        reject(err as Error);
      }
    });
    child.stdin.end(JSON.stringify({ requests, parallel }));
  });
}

describe.skipIf(skip !== undefined)('two hosts (network namespaces)', () => {
  it('the coordinator forwards to workers on two other hosts, which persist to Redis on a fourth; one SIGKILLed is routed around and comes back; lost 0', async () => {
    network = TestNetwork.create(['coord', 'w1', 'w2']);
    const hub = network.host('hub');
    const coord = network.host('coord');
    const hosts = [network.host('w1'), network.host('w2')];
    const redis = await startRedis({ bind: hub.address, port: 6379, prefix: hub.prefix });
    const secretDir = tempDir('countapp-secret-');
    const secretFile = path.join(secretDir, 'secret');
    writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const workerPort = 7001;
    const urls = hosts.map((host) => `http://${host.address}:${workerPort}`);
    const shared = { workers: urls, store: redis.url, secret_file: secretFile, worker_persist: 1, health_check: 0.5 };

    // Each worker host has its own config copy, database (write-ahead log) and logs.
    const configs = hosts.map((host) => {
      const dir = tempDir(`countapp-${host.name}-`);
      mkdirSync(path.join(dir, 'db'));
      const file = path.join(dir, 'config.yaml');
      writeFileSync(file, toYaml({ ...shared, port: 7000, database: 'db/', worker_logs: 'logs/' }));
      return file;
    });
    const start = (i: number): Promise<StandaloneWorker> => startStandaloneWorker({ configFile: configs[i]!, port: workerPort, host: hosts[i]!.address, prefix: hosts[i]!.prefix, url: urls[i] });
    const workers = [await start(0), await start(1)];
    const cluster: Cluster = await startCluster({ wait: false, commandPrefix: coord.prefix, config: shared });
    const coordinator = `http://127.0.0.1:${cluster.port}`;
    const ask = (requests: { method?: string; url: string; body?: unknown }[], parallel = 1): Promise<Answer[]> => requestsFrom(coord.namespace, requests, parallel);
    const states = async (): Promise<string[]> => {
      const [status] = await ask([{ url: `${coordinator}/` }]);
      return status!.status === 200 ? status!.body.workers.map((w: { state: string }) => w.state) : [];
    };
    await waitFor(async () => (await states()).join() === 'up,up', 30_000, 'the coordinator to find both workers up');

    const acked = new Map<string, Set<string>>();
    let sent = 0;
    const post = async (prefix: string, batches: number): Promise<number[]> => {
      const requests = Array.from({ length: batches }, (_, b) => ({
        method: 'POST',
        url: `${coordinator}/items`,
        body: Array.from({ length: 25 }, (_, i) => ({ id: `${prefix}-${(b * 25 + i) % 700}`, tenant: `tenant-${(b + i) % 4}` })),
      }));
      const answers = await ask(requests, 4);
      answers.forEach((answer, b) => {
        sent++;
        if (answer.status !== 200) return;
        for (const item of requests[b]!.body) {
          let ids = acked.get(item.tenant);
          if (ids === undefined) acked.set(item.tenant, (ids = new Set()));
          ids.add(item.id);
        }
      });
      return answers.map((answer) => answer.status);
    };
    const countsEverywhere = async (): Promise<Map<string, number[]>> => {
      const tenants = [...acked.keys()];
      const answers = await ask(tenants.flatMap((tenant) => [coordinator, ...urls].map((base) => ({ url: `${base}/items/count?tenant=${tenant}` }))), 4);
      return new Map(tenants.map((tenant, i) => [tenant, answers.slice(i * 3, i * 3 + 3).map((answer) => answer.body?.count as number)]));
    };
    const exact = async (): Promise<boolean> => {
      const counts = await countsEverywhere();
      return [...acked].every(([tenant, ids]) => counts.get(tenant)!.every((count) => count === ids.size));
    };

    expect(new Set(await post('one', 40))).toEqual(new Set([200]));
    await waitFor(exact, 15_000, 'the coordinator and both workers to count exactly what was acknowledged');
    // Both hosts took batches and wrote them to Redis over the network.
    const health = await ask(urls.map((url) => ({ url: `${url}/` })));
    for (const answer of health) expect(answer.body.store).toMatchObject({ kind: 'redis', reachable: true });
    expect(health.every((answer) => answer.body.store.persistedIds > 0)).toBe(true);

    // One host's worker dies: the coordinator routes around it; restarted by hand, it comes back by itself.
    await workers[0]!.kill();
    await waitFor(async () => (await states())[0] === 'down', 10_000, 'the coordinator to see w1 down');
    expect(new Set(await post('two', 20))).toEqual(new Set([200]));
    workers[0] = await start(0);
    await waitFor(async () => (await states()).join() === 'up,up', 15_000, 'w1 back in rotation');
    expect(new Set(await post('three', 20))).toEqual(new Set([200]));
    await waitFor(exact, 15_000, 'every count exact after the restart');

    const counts = await countsEverywhere();
    let lost = 0;
    for (const [tenant, ids] of acked) for (const count of counts.get(tenant)!) lost += Math.max(0, ids.size - count);
    console.log(`two hosts: ${sent} batches sent, all acknowledged; coordinator in ${coord.namespace}, workers at ${urls.join(' and ')}, Redis at ${redis.url}; lost ${lost}`);
    expect(lost).toBe(0);
    for (const worker of workers) expect((await worker.stop()).code).toBe(0);
  }, 120_000);
});
