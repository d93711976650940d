import { appendFileSync, existsSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { Ownership } from '../../worker/store/ownership.js';
import { shardLockTarget, shardOf } from '../../worker/store/shards.js';
import { parseTenantLines } from '../../worker/store/tenant-file-format.js';
import { everyWorkerCounts, isAlive, startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';
import { generous, reportTiming } from '../helpers/slow-machine.js';

const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await stopAllClusters();
});

function idsInFile(file: string): Set<string> {
  // Torn lines are skipped, as the workers skip them.
  return new Set(parseTenantLines(readFileSync(file, 'utf8')).ids);
}

function workerLog(cluster: Cluster, url: string): string {
  const file = path.join(cluster.dir, 'logs', `worker-${new URL(url).port}.log`);
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

const batch = (tenant: string, n: number, prefix = 'id') => Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, tenant }));

describe('durability', () => {
  it('a lock left by a SIGKILLed holder blocks the tenant no longer than the stale timeout, and no id is lost', async () => {
    const stale = 2;
    const persist = 1;
    // Stale after `stale` s, taken over at the next persist round, plus a second for that persist.
    const promised = stale + persist + 1;
    const cluster = await startCluster({ workers: 2, config: { worker_persist: persist, lock_stale: stale } });
    const db = path.join(cluster.dir, 'db');
    const file = tenantFilePath(db, 'contended');
    const lock = shardLockTarget(db, shardOf('contended'));
    expect((await cluster.post(batch('contended', 10, 'before'))).status).toBe(200);
    await waitFor(() => existsSync(file) && idsInFile(file).size === 10, 5_000, 'the first ids to be persisted');
    // The worker that writes this tenant keeps its shard's lock; it dies mid-append, leaving a torn line and the lock.
    const owners = new Ownership('none');
    owners.setMembers(cluster.workerUrls.map((url) => ({ id: `worker-${new URL(url).port}`, url })));
    const holderUrl = owners.ownerOf('contended')!.url;
    const other = cluster.workerUrls.find((url) => url !== holderUrl)!;
    expect(existsSync(`${lock}.lock`)).toBe(true);
    const holderPid = (await cluster.status()).workers.find((w) => w.url === holderUrl)!.pid!;
    appendFileSync(file, '["torn-by-the-cra');
    process.kill(holderPid, 'SIGKILL');
    const killed = Date.now();

    expect((await cluster.post(batch('contended', 100, 'during'), other)).status).toBe(200);
    await waitFor(() => idsInFile(file).size === 110, (generous(promised) + 5) * 1000, 'the ids posted meanwhile to reach the file');
    const blocked = (Date.now() - killed) / 1000;
    reportTiming(`tenant written again after its lock holder was SIGKILLed (lock_stale ${stale} s, worker_persist ${persist} s)`, blocked, promised, 's');
    expect(blocked).toBeLessThan(generous(promised));
    await cluster.waitReady(15_000); // the holder is respawned meanwhile
    await everyWorkerCounts(cluster, 'contended', 110, 5_000);
  });

  it('a persist round bigger than one hand-over to the merge thread (4 MiB) loses nothing of a tenant split across two', async () => {
    const cluster = await startCluster({ workers: 1, config: { worker_persist: 60, worker_publish: 0, max_batch_items: 50_000, max_body_bytes: 8 * 1024 * 1024 } });
    const [url] = cluster.workerUrls as [string];
    // 400,000 ids of one tenant, pending together: ~5 MB of ids in one round, so the tenant is cut in two.
    const total = 400_000;
    for (let from = 0; from < total; from += 50_000) {
      const items = Array.from({ length: 50_000 }, (_, i) => ({ id: `big-round-id-${from + i}`, tenant: 'split' }));
      expect((await cluster.post(items, url)).status).toBe(200);
    }
    cluster.writeConfig({ worker_persist: 0.5, max_batch_items: 50_000, max_body_bytes: 8 * 1024 * 1024 });
    await everyWorkerCounts(cluster, 'split', total, 30_000);
  });

  it("a removed worker's write-ahead log is adopted by a live worker after a crash", async () => {
    const cluster = await startCluster({ workers: 3, config: { worker_persist: 60, worker_publish: 0 } });
    const [a, b, c] = cluster.workerUrls as [string, string, string];
    // Acknowledged by c only, still pending there (its persist is a minute away).
    expect((await cluster.post(batch('adopted', 50), c)).status).toBe(200);
    const pids = await cluster.workerPids();
    for (const pid of [cluster.pid, ...pids]) process.kill(pid, 'SIGKILL');
    await waitFor(() => [cluster.pid, ...pids].every((pid) => !isAlive(pid)), 10_000, 'everything to die');
    const cFolder = path.join(cluster.dir, 'db', '.wal', `worker-${new URL(c).port}`);
    expect(readdirSync(cFolder).some((name) => name.endsWith('.log'))).toBe(true);

    // c is gone from the config: nobody will respawn it. a or b must find its log.
    cluster.writeConfig({ workers: [a, b], worker_persist: 1 });
    await cluster.restart();
    await everyWorkerCounts(cluster, 'adopted', 50, 10_000);
    await waitFor(() => !existsSync(cFolder), 10_000, "c's log folder to be cleaned up after adoption");
    expect(workerLog(cluster, a) + workerLog(cluster, b)).toMatch(/adopted the write-ahead log of worker-\d+/);
  });

  it('a tenant file that is a symlink is never followed: refused clearly, its ids stay safe, persisted once it is a file again', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 1 } });
    const [a, b] = cluster.workerUrls as [string, string];
    const file = tenantFilePath(path.join(cluster.dir, 'db'), 'linked');
    const outside = path.join(cluster.dir, 'outside.json');
    writeFileSync(outside, '');
    symlinkSync(outside, file);
    cleanups.push(() => rmSync(file, { force: true }));
    expect((await cluster.post(batch('linked', 20), a)).status).toBe(200);
    await waitFor(() => /linked.json is a symbolic link/.test(workerLog(cluster, a) + workerLog(cluster, b)), 5_000, 'the refusal in the log');
    expect(readFileSync(outside, 'utf8')).toBe(''); // nothing written through the link
    const counted = await cluster.request('/items/count?tenant=linked', {}, b);
    expect(counted.status).toBe(503); // a count it cannot read is an error, never a made-up number
    expect(counted.body.error.message).toMatch(/symbolic link/);
    // The worker is killed meanwhile: its items are in its write-ahead log, and come back.
    const pid = (await cluster.status()).workers.find((w) => w.url === a)!.pid!;
    process.kill(pid, 'SIGKILL');
    rmSync(file); // the operator moves the link away
    await everyWorkerCounts(cluster, 'linked', 20, 15_000, [a, b]);
    expect(idsInFile(file).size).toBe(20);
  });

  it('a worker whose port is taken is retried with backoff, reported clearly, and the rest keeps serving', async () => {
    const cluster = await startCluster({ workers: 2 });
    const [port] = await freePorts(1);
    const squatter = net.createServer().listen(port, '127.0.0.1');
    cleanups.push(() => squatter.close());
    await new Promise((resolve) => squatter.once('listening', resolve));
    const blocked = `http://127.0.0.1:${port}`;
    cluster.writeConfig({ workers: [...cluster.workerUrls, blocked] });
    await waitFor(() => (cluster.output().match(new RegExp(`respawning worker-${port} in`, 'g')) ?? []).length >= 3, 15_000, 'three retries');
    expect(cluster.output()).toMatch(new RegExp(`worker-${port} could not start: port ${port} is already in use`));
    const delays = [...cluster.output().matchAll(new RegExp(`respawning worker-${port} in ([\\d.]+) s`, 'g'))].map((m) => Number(m[1]));
    expect(delays[2]!).toBeGreaterThan(delays[0]!);
    // The others serve meanwhile.
    expect((await cluster.post(batch('meanwhile', 3))).status).toBe(200);
    await everyWorkerCounts(cluster, 'meanwhile', 3, 5_000, cluster.workerUrls.filter((url) => url !== blocked));
    squatter.close();
    await cluster.waitReady(40_000);
    expect((await cluster.post(batch('late', 2), blocked)).status).toBe(200);
  }, 90_000);
});
