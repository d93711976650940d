import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { statusCommand } from '../../coordinator/cli/status-command.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { isAlive, locksUnder, startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { Ledger, postUntil } from '../helpers/ledger.js';

/**
 * Mistakes an operator makes with a running cluster, each played for real: a ledger of
 * what clients were told, then every worker's count of every tenant after a SIGKILL and a
 * restart of the whole cluster. Nothing acknowledged may be lost, nothing over-counted.
 */
const STRAY = fileURLToPath(new URL('../fixtures/stray-worker.mjs', import.meta.url));
const run = promisify(execFile);
afterEach(stopAllClusters);

const TENANTS = Array.from({ length: 20 }, (_, i) => `tenant-${i}`);

/** Every worker's log so far (a log file not made yet reads as empty). */
function workerLogs(cluster: Cluster): string {
  return cluster.workerUrls.map((url) => (existsSync(cluster.workerLogFile(url)) ? readFileSync(cluster.workerLogFile(url), 'utf8') : '')).join('\n');
}

/** SIGKILLs one worker, waits for its respawn, then restarts the whole cluster: what was acknowledged must all come back. */
async function crashAndRestart(cluster: Cluster): Promise<void> {
  const [victim] = await cluster.workerPids();
  process.kill(victim!, 'SIGKILL');
  await waitFor(async () => !(await cluster.workerPids()).includes(victim!) && (await cluster.status()).workers.every((w) => w.state === 'up'), 20_000, 'the killed worker to be respawned');
  await cluster.restart();
}

async function expectNothingLost(cluster: Cluster, ledger: Ledger, what: string): Promise<void> {
  // Once quiet, every worker counts exactly: wait for the last persist round.
  let result = await ledger.check(cluster);
  const deadline = Date.now() + 15_000;
  while ((result.lost > 0 || result.overCounted > 0) && Date.now() < deadline) {
    await sleep(250);
    result = await ledger.check(cluster);
  }
  console.log(`${what}: ${ledger.summary()}; lost ${result.lost}; over-counted ${result.overCounted} (over ${result.workers} workers)`);
  expect(result).toEqual({ lost: 0, overCounted: 0, workers: cluster.workerUrls.length });
}

describe('operator mistakes', () => {
  it('a second cluster on the same database refuses at start, naming the database and the holder, and touches nothing', async () => {
    const first = await startCluster({ workers: 2 });
    const ledger = new Ledger();
    const loading = postUntil(first, ledger, { clients: 3, until: Date.now() + 4000, tenants: TENANTS, prefix: 'first' });
    await sleep(500);
    const walRoot = path.join(first.dir, 'db', '.wal');
    const walBefore = readdirSync(walRoot).sort();

    // Another coordinator (another port), the same database and the same worker ports.
    const second = await startCluster({ workers: 2, wait: false, config: { database: path.join(first.dir, 'db'), workers: first.workerUrls } });
    await waitFor(() => second.exited !== undefined, 15_000, 'the second coordinator to exit');
    expect(second.exited!.code).toBe(1);
    expect(second.output()).toContain(`the database ${path.join(first.dir, 'db')} is in use by another CountApp cluster (coordinator pid ${first.pid}, port ${first.port})`);
    expect(second.output()).not.toMatch(/spawned worker/);

    // A worker started by hand on the same database, as one of the first cluster's workers.
    const id = `worker-${new URL(first.workerUrls[0]!).port}`;
    const { stdout } = await run(process.execPath, [STRAY, first.configFile, id]);
    const stray = JSON.parse(stdout) as { code: number; messages: { type: string; message: string }[] };
    expect(stray.code).toBe(1);
    const holderPid = (await first.status()).workers.find((w) => w.id === id)!.pid;
    expect(stray.messages.find((m) => m.type === 'fatal')!.message).toMatch(new RegExp(`write-ahead log of ${id} .* is in use: .* pid ${holderPid} \\(worker, ${id}\\)`));
    expect(readdirSync(walRoot).sort()).toEqual(walBefore);

    await loading;
    await crashAndRestart(first);
    await expectNothingLost(first, ledger, 'second cluster refused');
  });

  /**
   * `rm -rf` of a folder the workers write into meanwhile: rm retries a folder that fills
   * up again under it (on a loaded machine they can refill it 20 times in a row: keep at
   * it for a while).
   */
  const removeWhileWritten = (db: string): Promise<void> => waitFor(() => {
    try {
      rmSync(db, { recursive: true, force: true, maxRetries: 20, retryDelay: 10 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY') return false;
      throw err;
    }
  }, 10_000, `rm -rf of ${db}`);

  it('rm -rf of the database while running: nothing is acknowledged into a lost log; what the workers held is written back', async () => {
    const cluster = await startCluster({ workers: 2 });
    const ledger = new Ledger();
    const db = path.join(cluster.dir, 'db');
    const loading = postUntil(cluster, ledger, { clients: 3, until: Date.now() + 6000, tenants: TENANTS, prefix: 'rm' });
    await sleep(2000);
    await removeWhileWritten(db);
    await loading;
    // Refused while the log was being recreated, then acknowledged again.
    expect(ledger.statuses.get(503) ?? 0).toBeGreaterThanOrEqual(0);
    await waitFor(() => /the write-ahead log was lost/.test(workerLogs(cluster)), 5_000, 'a worker to say its log was lost');
    // rm may have removed a log recreated while it ran; the next persist round finds that.
    await waitFor(() => existsSync(path.join(db, '.wal')), 10_000, 'the write-ahead log folder to be recreated');

    // Once more with no batch arriving: the persist rounds alone find the log gone, recreate
    // it and write back every tenant file (the crash below leaves only the files and logs).
    const count = (pattern: RegExp): number => workerLogs(cluster).match(pattern)?.length ?? 0;
    const recreated = (): number => count(/the write-ahead log is recreated and \d+ tenant file\(s\) are written back/g);
    const lost = (): number => count(/the write-ahead log was lost/g);
    // First let every recovery of the first rm finish (a worker still writing back made a
    // second rm meet ENOTEMPTY, and a retried rm can delete a log recreated between tries).
    let seen = '';
    let stableSince = Date.now();
    await waitFor(() => {
      const now = `${lost()}/${recreated()}`;
      if (now !== seen) [seen, stableSince] = [now, Date.now()];
      return recreated() > 0 && recreated() === lost() && existsSync(path.join(db, '.wal')) && Date.now() - stableSince > 1500;
    }, 20_000, 'every worker that lost its log to have recreated it and written back its tenant files');
    const recreatedBefore = recreated();
    await removeWhileWritten(db);
    await waitFor(() => recreated() >= recreatedBefore + 2 && recreated() === lost(), 10_000, 'both workers to recreate their logs and write back their tenant files with no batch arriving');
    await waitFor(() => existsSync(path.join(db, '.wal')), 10_000, 'the write-ahead log folder to exist again');
    await crashAndRestart(cluster);
    await expectNothingLost(cluster, ledger, 'rm -rf db/ while running, then while quiet');
  });

  it('an emptied or garbled file in a live worker\'s log folder never gets that log adopted', async () => {
    const cluster = await startCluster({ workers: 3 });
    const ledger = new Ledger();
    const walRoot = path.join(cluster.dir, 'db', '.wal');
    const until = Date.now() + 5000;
    const loading = postUntil(cluster, ledger, { clients: 3, until, tenants: TENANTS, prefix: 'owner' });
    while (Date.now() < until) {
      for (const folder of existsSync(walRoot) ? readdirSync(walRoot) : []) {
        // What the previous version decided liveness by, emptied or garbled by hand.
        try {
          writeFileSync(path.join(walRoot, folder, 'owner.json'), Math.random() < 0.5 ? '' : '{"pid": 1, "start": "garbage"}');
        } catch {
          // The folder is being rotated: fine.
        }
      }
      await sleep(100);
    }
    await loading;
    const logs = workerLogs(cluster);
    expect(logs).not.toMatch(/adopted the write-ahead log/);
    await crashAndRestart(cluster);
    await expectNothingLost(cluster, ledger, 'owner files emptied');
  });

  it('Ctrl-C with a big backlog leaves no lock and no process; what was not persisted in time is persisted at the next start', async () => {
    const cluster = await startCluster({ workers: 2, config: { worker_persist: 60, worker_publish: 0, kill_timeout: 3 } });
    const ledger = new Ledger();
    const tenants = 60_000;
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < tenants) {
        const batch = Array.from({ length: Math.min(500, tenants - next) }, () => {
          const n = next++;
          return { id: 'only', tenant: `backlog-${n}` };
        });
        expect(await ledger.post(cluster, batch)).toBe(200);
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    const pids = [cluster.pid, ...(await cluster.workerPids())];
    const started = Date.now();
    await cluster.stop('SIGINT', { group: true, timeoutMs: 30_000 });
    console.log(`Ctrl-C with ${tenants} new tenants pending: everything stopped after ${((Date.now() - started) / 1000).toFixed(1)} s (kill_timeout 3 s)`);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(locksUnder(path.join(cluster.dir, 'db'))).toEqual([]);
    expect(cluster.output()).not.toMatch(/did not stop within/);

    await cluster.restart();
    // Every tenant is written once the restarted workers persisted what their logs kept, and counted by every worker.
    const db = path.join(cluster.dir, 'db');
    await waitFor(() => readdirSync(db).filter((name) => name.startsWith('backlog-')).length === tenants, 60_000, `all ${tenants} tenant files after the restart`);
    const sample = Array.from({ length: 200 }, (_, i) => `backlog-${Math.floor((i * tenants) / 200)}`);
    await waitFor(async () => {
      for (const url of cluster.workerUrls) for (const tenant of sample) if ((await cluster.count(tenant, url)) !== 1) return false;
      return true;
    }, 10_000, 'every sampled tenant to be counted on every worker after the restart');
  }, 120_000);

  it('one tenant file that cannot be written is isolated: the rest persist, the log keeps only its ids, and a stop says so', async () => {
    const cluster = await startCluster({ workers: 2 });
    const db = path.join(cluster.dir, 'db');
    mkdirSync(tenantFilePath(db, 'broken'), { recursive: true });
    const ledger = new Ledger();
    await postUntil(cluster, ledger, { clients: 2, until: Date.now() + 3000, tenants: [...TENANTS, 'broken'], prefix: 'iso', batch: 50 });
    const others = ledger.withoutTenant('broken');
    await expectNothingLost(cluster, others, 'the other tenants beside a broken one');
    const logs = workerLogs(cluster);
    expect(logs).toMatch(/broken\.json is a directory, not a regular file/);
    // The write-ahead logs hold the broken tenant's ids only, not every tenant's since the trouble began.
    await sleep(2500);
    const walBytes = readdirSync(path.join(db, '.wal'), { recursive: true, encoding: 'utf8' })
      .map((name) => path.join(db, '.wal', name)).filter((file) => statSync(file).isFile()).reduce((n, file) => n + statSync(file).size, 0);
    const brokenIds = ledger.acked.get('broken')!.size;
    expect(walBytes).toBeLessThan(brokenIds * 40 + 4096);

    // What an operator is shown meanwhile: the rounds that try the broken tenant alone are
    // not ok and persist no id (a round used to say ok, with its attempted ids as persisted).
    type Round = { tenants: number; ids: number; failedTenants: number; ok: boolean };
    let failing: { id: string; lastPersist: Round } | undefined;
    await waitFor(async () => {
      const { workers } = (await cluster.request('/status')).body as { workers: { id: string; lastPersist: Round | null }[] };
      const found = workers.find((w) => w.lastPersist !== null && w.lastPersist.tenants === 1 && w.lastPersist.failedTenants === 1);
      failing = found === undefined ? undefined : { id: found.id, lastPersist: found.lastPersist! };
      return failing !== undefined;
    }, 10_000, 'a round of the broken tenant alone in /status');
    expect(failing!.lastPersist).toMatchObject({ ids: 0, ok: false });
    let table = '';
    await statusCommand(cluster.url, { json: false, color: false, out: (text) => { table += text; } });
    expect(table.split('\n').find((line) => line.includes(`│ ${failing!.id} `))).toMatch(/, 0 ids, incomplete: 1 tenant failed/);

    // The operator moves the directory away: the broken tenant's ids arrive too.
    rmSync(tenantFilePath(db, 'broken'), { recursive: true });
    await expectNothingLost(cluster, ledger, 'broken tenant repaired');
  });

  it('keeps its data readable and writable by its own user only', async () => {
    const cluster = await startCluster({ workers: 2 });
    expect((await cluster.post([{ id: 'a', tenant: 'private' }])).status).toBe(200);
    const db = path.join(cluster.dir, 'db');
    await waitFor(() => existsSync(tenantFilePath(db, 'private')), 5_000, 'the tenant file');
    expect(statSync(tenantFilePath(db, 'private')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(db, '.wal')).mode & 0o777).toBe(0o700);
    const walFolder = path.join(db, '.wal', readdirSync(path.join(db, '.wal'))[0]!);
    expect(statSync(walFolder).mode & 0o777).toBe(0o700);
    for (const segment of readdirSync(walFolder)) expect(statSync(path.join(walFolder, segment)).mode & 0o777).toBe(0o600);
    // The logs too (they hold ids): the coordinator's own, and each worker's (its stdout, opened by the coordinator).
    const logs = path.join(cluster.dir, 'logs');
    expect(statSync(logs).mode & 0o777).toBe(0o700);
    const logFiles = readdirSync(logs).filter((name) => /^(coordinator|worker-\d+)\.log$/.test(name)).sort();
    expect(logFiles).toEqual(['coordinator.log', ...cluster.workerUrls.map((url) => `worker-${new URL(url).port}.log`)].sort());
    for (const file of logFiles) expect([file, statSync(path.join(logs, file)).mode & 0o777]).toEqual([file, 0o600]);
  });
});
