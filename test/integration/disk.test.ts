import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { parseTenantLines } from '../../worker/store/tenant-file-format.js';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { generous, reportTiming } from '../helpers/slow-machine.js';

/**
 * A real small file system (tmpfs) as `database`, filled up under a running cluster.
 * (A read-only remount is refused while the logs are open for writing, so EROFS is not
 * staged; it takes the same path as ENOSPC.) Mounting needs root (CAP_SYS_ADMIN): where it is refused,
 * these tests are skipped, and the full-disk path is still covered by durability.test.ts.
 */
let root: string;
let db: string;
let mounted = false;

function mount(...args: string[]): boolean {
  try {
    execFileSync('mount', args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'countapp-disk-'));
  db = path.join(root, 'db');
  mkdirSync(db);
  mounted = mount('-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', db);
});
afterEach(async () => {
  await stopAllClusters();
  if (mounted) execFileSync('umount', ['-l', db]);
  rmSync(root, { recursive: true, force: true });
});

const batch = (tenant: string, n: number) => Array.from({ length: n }, (_, i) => ({ id: `${tenant}-${i}`, tenant }));

function idsInFile(tenant: string): number {
  const file = tenantFilePath(db, tenant);
  if (!existsSync(file)) return 0;
  return new Set(parseTenantLines(readFileSync(file, 'utf8')).ids).size;
}

/** Writes a filler file until the file system answers ENOSPC. */
function fillDisk(): string {
  const filler = path.join(db, 'filler');
  const chunk = Buffer.alloc(64 * 1024, 1);
  let size = 0;
  for (;;) {
    try {
      writeFileSync(filler, chunk, { flag: 'a' });
      size += chunk.length;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
      throw err;
    }
    if (size > 64 * 1024 * 1024) throw new Error('the disk never filled up');
  }
  // Fill the last scraps too, so even a small log line fails.
  for (let n = 4096; n >= 1; n = Math.floor(n / 2)) {
    try {
      for (;;) writeFileSync(filler, Buffer.alloc(n, 1), { flag: 'a' });
    } catch {
      // next smaller size
    }
  }
  return filler;
}

async function countsEverywhere(cluster: Cluster, tenant: string): Promise<number[]> {
  return Promise.all(cluster.workerUrls.map((url) => cluster.count(tenant, url)));
}

function workerLogs(cluster: Cluster): string {
  const dir = path.join(cluster.dir, 'logs');
  return readdirSync(dir).map((name) => readFileSync(path.join(dir, name), 'utf8')).join('\n');
}

describe('a database on a disk that fills up', () => {
  it('refuses new batches with 503 storage_unavailable (nothing applied) and persists what it had acknowledged once space is back', async (ctx) => {
    if (!mounted) ctx.skip();
    // Every worker refuses at once, so the client hears within a moment (2 s promised), far inside forward_deadline.
    const promisedMs = 2000;
    const deadline = Math.ceil((3 * generous(promisedMs)) / 1000);
    const cluster = await startCluster({ workers: 2, config: { database: db, worker_persist: 2, forward_deadline: deadline } });
    expect((await cluster.post(batch('before', 30))).status).toBe(200);
    await waitFor(() => idsInFile('before') === 30, 10_000, 'the first batch to be persisted');

    // Acknowledged, then the disk fills before the next persist.
    expect((await cluster.post(batch('acked', 40))).status).toBe(200);
    const filler = fillDisk();
    // A log's last page may still hold a few small lines; soon every write fails.
    let tenant = 'refused';
    let started = Date.now();
    let refused = await cluster.post(batch(tenant, 20));
    for (let i = 0; refused.status === 200 && i < 500; i++) {
      tenant = `probe-${i}`;
      started = Date.now();
      refused = await cluster.post(batch(tenant, 20));
    }
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('storage_unavailable');
    expect(refused.body.error.message).toMatch(/disk is full/);
    // Every worker said so: the client learns it at once, not after forward_deadline.
    const answeredMs = Date.now() - started;
    reportTiming(`503 storage_unavailable answered on a full disk (forward_deadline ${deadline} s)`, answeredMs, promisedMs, 'ms');
    expect(answeredMs).toBeLessThan(generous(promisedMs));
    expect(await countsEverywhere(cluster, tenant)).toEqual([0, 0]); // nothing of it applied
    await waitFor(() => /could not persist .*the disk is full/.test(workerLogs(cluster)), 10_000, 'the persist failure in a worker log');

    rmSync(filler); // space is back
    await waitFor(async () => (await countsEverywhere(cluster, 'acked')).every((n) => n === 40) && idsInFile('acked') === 40, 15_000, 'the acknowledged batch to be persisted and counted everywhere');
    expect((await cluster.post(batch(tenant, 20))).status).toBe(200);
    await waitFor(async () => (await countsEverywhere(cluster, tenant)).every((n) => n === 20), 10_000, 'the retried batch to be counted');
  });
});
