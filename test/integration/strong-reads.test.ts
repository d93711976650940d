import { mkdirSync, existsSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { Ledger, postUntil } from '../helpers/ledger.js';
import { freePorts } from '../helpers/ports.js';

afterEach(stopAllClusters);

/** `GET /items/{tenant}/count?consistency=strong` through the coordinator. */
function strongCount(cluster: Cluster, tenant: string): Promise<{ status: number; body: any }> {
  return cluster.request(`/items/${encodeURIComponent(tenant)}/count?consistency=strong`);
}

describe('strong reads (consistency=strong)', () => {
  it('include a batch a worker acknowledged and will not persist for a minute, in every form of the count', async () => {
    const cluster = await startCluster({ workers: 3, config: { worker_persist: 60, worker_publish: 0 } });
    const [a, b] = cluster.workerUrls as [string, string];
    expect((await cluster.post([{ id: '1', tenant: 'ryw' }, { id: '2', tenant: 'ryw' }, { id: '3', tenant: 'ryw' }], a)).status).toBe(200);
    // Another worker does not count it yet: it is only in worker A's memory and log.
    const before = await cluster.count('ryw', b);
    expect((await strongCount(cluster, 'ryw')).body).toEqual({ count: 3 });
    expect((await cluster.request('/items/count?tenant=ryw&consistency=strong')).body).toEqual({ count: 3 });
    expect((await cluster.request('/counts?tenant=ryw&consistency=strong')).body).toEqual({ counts: { ryw: 3 } });
    // The flush made it visible to every worker: eventual reads count it now too.
    for (const url of cluster.workerUrls) expect(await cluster.count('ryw', url)).toBe(3);
    console.log(`[strong] worker B counted ${before} before the strong read, 3 after`);
  });

  it('200 rounds of POST then strong GET under concurrent load: each count includes every batch acknowledged before it was asked', async () => {
    const cluster = await startCluster({ workers: 4, config: { worker_persist: 1 } });
    const ledger = new Ledger();
    const tenant = 'rounds';
    const until = Date.now() + 120_000;
    let stop = false;
    // Background load on the same tenant and others: every worker holds pending ids of it, persist rounds hand them over.
    const load = postUntil(cluster, ledger, { clients: 4, until, tenants: [tenant, 'other-1', 'other-2'], prefix: 'load', batch: 20, stop: () => stop });
    const forms = [
      (t: string) => `/items/${encodeURIComponent(t)}/count?consistency=strong`,
      (t: string) => `/items/count?tenant=${encodeURIComponent(t)}&consistency=strong`,
      (t: string) => `/counts?consistency=strong&tenant=${encodeURIComponent(t)}`,
    ];
    let rounds = 0;
    let eventualBehind = 0;
    const failures: string[] = [];
    const checker = async (name: number): Promise<void> => {
      for (let i = 0; i < 50 && Date.now() < until; i++) {
        const batch = Array.from({ length: 5 }, (_, k) => ({ id: `check-${name}-${i}-${k}`, tenant }));
        const status = await ledger.post(cluster, batch);
        if (status !== 200) {
          failures.push(`round ${name}/${i}: POST answered ${status}`);
          continue;
        }
        // Everything acknowledged so far, this round's batch included, must be in the answer.
        const acked = ledger.acked.get(tenant)!.size;
        const eventual = await cluster.count(tenant);
        if (eventual < acked) eventualBehind++;
        const answer = await cluster.request(forms[i % forms.length]!(tenant));
        const count = answer.body?.count ?? answer.body?.counts?.[tenant];
        rounds++;
        if (answer.status !== 200 || typeof count !== 'number') failures.push(`round ${name}/${i}: ${answer.status} ${JSON.stringify(answer.body)}`);
        else if (count < acked) failures.push(`round ${name}/${i}: strong count ${count} < ${acked} acknowledged before it was asked`);
        else if (count > ledger.sent.get(tenant)!.size) failures.push(`round ${name}/${i}: strong count ${count} > ${ledger.sent.get(tenant)!.size} ever sent`);
      }
    };
    try {
      await Promise.all([0, 1, 2, 3].map(checker));
    } finally {
      stop = true;
      await load;
    }
    console.log(`[strong] ${rounds} rounds of POST then strong GET under load (${ledger.summary()}): ${failures.length} failed; an eventual read just before was behind in ${eventualBehind}`);
    expect(failures).toEqual([]);
    expect(rounds).toBe(200);
  });

  it('answers 503 strong_read_unavailable, naming the worker, while a configured worker is not live; eventual reads go on', async () => {
    const cluster = await startCluster({ workers: 2 });
    const workers = [...cluster.workerUrls];
    expect((await cluster.post([{ id: '1', tenant: 'down' }])).status).toBe(200);
    // A third worker whose port another program holds: it cannot start, and backs off.
    const [port] = await freePorts(1);
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      cluster.writeConfig({ workers: [...workers, `http://127.0.0.1:${port}`] });
      await waitFor(async () => (await cluster.status()).workers.some((w) => w.id === `worker-${port}` && w.state === 'backing-off'), 15_000, 'the new worker to back off');
      const refused = await strongCount(cluster, 'down');
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('strong_read_unavailable');
      expect(refused.body.error.message).toContain(`worker-${port} is backing-off`);
      expect(typeof refused.body.error.id).toBe('string');
      expect((await cluster.request('/counts?tenant=down&consistency=strong')).body.error.code).toBe('strong_read_unavailable');
      // The id finds the detail in the coordinator's log.
      await waitFor(() => cluster.output().includes(refused.body.error.id), 5_000, 'the error id in the log');
      const eventual = await cluster.request('/items/down/count');
      expect(eventual.status).toBe(200);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
    await cluster.waitReady(40_000);
    expect((await cluster.post([{ id: '2', tenant: 'down' }], `http://127.0.0.1:${port}`)).status).toBe(200);
    expect((await strongCount(cluster, 'down')).body).toEqual({ count: 2 });
  });

  it('answers 503 while a write-ahead log of a worker no longer in the cluster waits to be taken over, then counts again', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 1 } });
    expect((await strongCount(cluster, 'orphan')).status).toBe(200);
    // What a worker removed from the config after a SIGKILL leaves behind (empty here: a live worker adopts it all the same).
    const orphan = path.join(cluster.dir, 'db', '.wal', 'worker-65000');
    mkdirSync(orphan, { recursive: true });
    const refused = await strongCount(cluster, 'orphan');
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('strong_read_unavailable');
    expect(refused.body.error.message).toContain('worker-65000');
    // The next persist round of a live worker takes it over.
    await waitFor(() => !existsSync(orphan), 10_000, 'the orphaned log to be adopted');
    expect((await strongCount(cluster, 'orphan')).body).toEqual({ count: 0 });
  });

  it("answers 503 while a worker cannot persist the tenant (its file is a symlink), the worker's own reason in one sentence: no '..'", async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 1 } });
    const file = tenantFilePath(path.join(cluster.dir, 'db'), 'linked');
    writeFileSync(path.join(cluster.dir, 'outside.json'), '');
    symlinkSync(path.join(cluster.dir, 'outside.json'), file);
    try {
      expect((await cluster.post([{ id: '1', tenant: 'linked' }])).status).toBe(200);
      const refused = await strongCount(cluster, 'linked');
      console.log(`[strong] refused: ${JSON.stringify(refused.body)}`);
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('strong_read_unavailable');
      expect(refused.body.error.message).toMatch(/safe in its write-ahead log\. No count is answered/);
      expect(refused.body.error.message).not.toContain('..');
    } finally {
      rmSync(file, { force: true }); // the operator moves the link away
    }
    await waitFor(async () => (await strongCount(cluster, 'linked')).status === 200, 15_000, 'the strong read to answer once the file can be written');
    expect((await strongCount(cluster, 'linked')).body).toEqual({ count: 1 });
  });

  it('refuses an unknown consistency (400) on the coordinator, and a strong read asked of a worker directly', async () => {
    const cluster = await startCluster({ workers: 1 });
    for (const pathname of ['/items/t/count?consistency=linearizable', '/items/count?tenant=t&consistency=', '/counts?tenant=t&consistency=weak', '/items/t/count?consistency=strong&consistency=strong']) {
      const answer = await cluster.request(pathname);
      expect(answer.status, pathname).toBe(400);
      expect(answer.body.error.code, pathname).toBe('invalid_consistency');
    }
    expect((await cluster.request('/items/t/count?consistency=EVENTUAL')).body).toEqual({ count: 0 });
    const worker = cluster.workerUrls[0]!;
    const direct = await cluster.request('/items/t/count?consistency=strong', {}, worker);
    expect(direct.status).toBe(400);
    expect(direct.body.error.code).toBe('invalid_consistency');
    expect(direct.body.error.message).toMatch(/coordinator/);
    expect((await cluster.request('/items/t/count?consistency=eventual', {}, worker)).body).toEqual({ count: 0 });
  });
});
