import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { signal } from '../helpers/stop-process.js';

/**
 * Health, readiness, status, metrics and logs of a real cluster: what an operator (or
 * Kubernetes, or Prometheus) reads, checked against what the cluster did.
 */

afterEach(async () => {
  await stopAllClusters();
});

async function get(cluster: Cluster, pathname: string): Promise<{ status: number; text: string; json: any }> {
  const res = await fetch(`${cluster.url}${pathname}`);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

/** Samples of one metric, as `{labels, value}` (labels parsed from the text format). */
function samples(text: string, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    out.push({ labels, value: Number(match[3]) });
  }
  return out;
}

function sum(list: Array<{ value: number }>): number {
  return list.reduce((total, sample) => total + sample.value, 0);
}

/** Log lines of a JSON-lines log file, parsed (a line that is not JSON fails the test). */
function logRecords(file: string): Array<Record<string, any>> {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, any>);
}

describe('health and readiness', () => {
  it('/healthz and /health answer while the process runs; /readyz is 503 not_ready with the reason while no worker is live, logged once', async () => {
    const cluster = await startCluster({ workers: 1 });
    for (const route of ['/healthz', '/health']) expect(await get(cluster, route)).toMatchObject({ status: 200, json: { status: 'ok' } });
    expect(await get(cluster, '/readyz')).toMatchObject({ status: 200, json: { ready: true, liveWorkers: 1 } });

    const [pid] = await cluster.workerPids();
    signal(pid!, 'SIGSTOP');
    try {
      await waitFor(async () => (await get(cluster, '/readyz')).status === 503, 15_000, '/readyz to answer 503 with the only worker stopped');
      const answer = await get(cluster, '/readyz');
      expect(answer.json.error.code).toBe('not_ready');
      expect(answer.json.error.message).toMatch(/no worker is live \(worker-\d+ suspect\)/);
      // Liveness is the coordinator's own: its worker's trouble does not make it fail.
      expect((await get(cluster, '/healthz')).status).toBe(200);
      for (let i = 0; i < 5; i++) expect((await get(cluster, '/readyz')).json.error.id).toBe(answer.json.error.id);
      const lines = logRecords(path.join(cluster.dir, 'logs', 'coordinator.log')).filter((r) => /^not ready: /.test(r.msg));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 'warn', errorId: answer.json.error.id });
    } finally {
      signal(pid!, 'SIGCONT');
    }
    await waitFor(async () => (await get(cluster, '/readyz')).status === 200, 15_000, '/readyz 200 again');
    await waitFor(() => logRecords(path.join(cluster.dir, 'logs', 'coordinator.log')).some((r) => /^ready again/.test(r.msg)), 5_000, 'the return to ready in the log');
    // A worker is ready too, on its own.
    expect((await fetch(`${cluster.workerUrls[0]}/readyz`)).status).toBe(200);
  });
});

describe('while the coordinator stops', () => {
  it('/readyz answers 503 "the coordinator is stopping" and /status answers for as long as the workers persist; new batches get 503 shutting_down', async () => {
    const cluster = await startCluster({ workers: 2, config: { kill_timeout: 6 } });
    const [stuck] = await cluster.workerPids();
    // A worker that cannot answer its stop keeps the coordinator stopping until kill_timeout.
    signal(stuck!, 'SIGSTOP');
    try {
      signal(cluster.pid, 'SIGINT');
      await waitFor(async () => (await get(cluster, '/readyz')).status === 503, 5_000, '/readyz to turn 503');
      expect((await get(cluster, '/readyz')).json.error.message).toMatch(/the coordinator is stopping/);
      expect(cluster.exited).toBeUndefined();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect((await get(cluster, '/status')).status).toBe(200);
      expect((await cluster.post([{ id: 'late', tenant: 'stopping' }])).body).toMatchObject({ error: { code: 'shutting_down' } });
    } finally {
      signal(stuck!, 'SIGCONT');
    }
    await cluster.waitFor(() => cluster.exited !== undefined, 20_000, 'the coordinator to exit');
  });
});

describe('GET /status', () => {
  it('shows each worker (pid, state, uptime, pending ids, tenants, log size, last persist), the config, its last error, and the coordinator\'s request counts', async () => {
    const cluster = await startCluster({ workers: 2 });
    const items = Array.from({ length: 30 }, (_, i) => ({ id: `id-${i}`, tenant: `tenant-${i % 3}` }));
    expect((await cluster.post(items)).status).toBe(200);
    expect((await cluster.post(items.slice(0, 10))).status).toBe(200);
    expect(await cluster.count('tenant-0')).toBeGreaterThanOrEqual(0);

    // Persisted within a round (worker_persist: 1) and reported by the next health check.
    await waitFor(async () => {
      const status = (await get(cluster, '/status')).json;
      // Nothing pending either: a worker's first round may come before the second batch reaches it.
      return status.workers.every((w: any) => w.lastPersist !== null && w.pendingIds === 0) && status.workers.reduce((n: number, w: any) => n + (w.tenants ?? 0), 0) === 3;
    }, 15_000, 'both workers reporting a persist, nothing pending, and the 3 tenants held by their writers');
    const { status, json } = await get(cluster, '/status');
    expect(status).toBe(200);
    expect(json).toMatchObject({ version: '1.0.0', pid: cluster.pid, ready: true, notReadyReason: null, configFile: cluster.configFile, configError: null, itemsAccepted: 40 });
    expect(json.config.workers.map((w: any) => w.url)).toEqual(cluster.workerUrls);
    expect(json.requests.ingest).toEqual({ 200: 2 });
    const pids = await cluster.workerPids();
    expect(json.workers.map((w: any) => w.pid)).toEqual(pids);
    for (const worker of json.workers) {
      expect(worker).toMatchObject({ state: 'up', local: true, restarts: 0, lastExit: null, nextRespawnAt: null, durability: 'fsync', pendingIds: 0 });
      expect(worker.uptime).toBeGreaterThan(0);
      expect(worker.walBytes).toBeGreaterThanOrEqual(0);
      expect(Date.parse(worker.lastPersist.at)).toBeGreaterThan(Date.now() - 60_000);
      expect(worker.lastPersist.ok).toBe(true);
    }

    // A config that does not validate: its error is shown while the last good config stays.
    cluster.writeConfig({ worker_persist: 'abc' });
    await waitFor(async () => (await get(cluster, '/status')).json.configError !== null, 15_000, 'the config error in /status');
    const rejected = (await get(cluster, '/status')).json;
    expect(rejected.configError.message).toMatch(/worker_persist.*'abc'/);
    expect(rejected.config.worker_persist).toBe(1);
    cluster.writeConfig({});
    await waitFor(async () => (await get(cluster, '/status')).json.configError === null, 15_000, 'the config error gone once the file is good again');

    // A killed worker: its exit, its restart.
    signal(pids[0]!, 'SIGKILL');
    await waitFor(async () => {
      const row = (await get(cluster, '/status')).json.workers[0];
      return row.restarts === 1 && row.state === 'up' && row.pid !== pids[0];
    }, 15_000, 'the killed worker respawned');
    expect((await get(cluster, '/status')).json.workers[0].lastExit).toMatchObject({ signal: 'SIGKILL', reason: 'signal SIGKILL' });
  });
});

describe('GET /metrics', () => {
  it('one scrape of the coordinator shows its own metrics and every worker\'s, labelled by worker, never a tenant', async () => {
    const cluster = await startCluster({ workers: 2 });
    const secretTenant = 'acme-secret-tenant';
    const items = Array.from({ length: 25 }, (_, i) => ({ id: `id-${i}`, tenant: i % 2 === 0 ? secretTenant : `other-${i}` }));
    for (let i = 0; i < 4; i++) expect((await cluster.post(items)).status).toBe(200);
    expect((await cluster.request(`/items/count?tenant=${secretTenant}`)).status).toBe(200);
    let last = '';
    await waitFor(async () => {
      const scrape = (await get(cluster, '/metrics')).text;
      last = ['countapp_worker_metrics_scraped', 'countapp_worker_persist_ids_total', 'countapp_worker_items_new_total', 'countapp_worker_pending_ids'].map((name) => `${name} ${JSON.stringify(samples(scrape, name))}`).join('\n');
      // Every distinct id went through some round (a worker persists an id it got twice
      // once, and a hand-over's ids once more at their owner: the sum depends on routing).
      return sum(samples(scrape, 'countapp_worker_persist_ids_total')) >= 25 && sum(samples(scrape, 'countapp_worker_items_new_total')) === 25;
    }, 30_000, 'the workers persisting the items').catch((err: Error) => {
      throw new Error(`${err.message}; last scrape:\n${last}`);
    });

    const res = await fetch(`${cluster.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    // A valid exposition: one TYPE line per metric, every sample line well formed.
    const types = text.split('\n').filter((line) => line.startsWith('# TYPE '));
    expect(new Set(types).size).toBe(types.length);
    for (const line of text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))) {
      // Values: numbers, ±Inf, and NaN (prom-client writes `Nan`, which Prometheus parses case-insensitively).
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|[+-]Inf|NaN|Nan)$/);
    }
    expect(text).not.toContain(secretTenant);
    expect(text).not.toContain('tenant=');

    const workerIds = cluster.workerUrls.map((url) => `worker-${new URL(url).port}`);
    expect(samples(text, 'countapp_items_accepted_total')).toEqual([{ labels: {}, value: 100 }]);
    const accepted = samples(text, 'countapp_worker_items_accepted_total');
    expect(accepted.map((s) => s.labels.worker).sort()).toEqual(workerIds);
    expect(sum(accepted)).toBe(100);
    // Distinct items: 25 ids of 13 + 12 tenants, each new once in the whole cluster.
    expect(sum(samples(text, 'countapp_worker_items_new_total'))).toBe(25);
    expect(sum(samples(text, 'countapp_forward_attempts_total').filter((s) => s.labels.outcome === 'answered'))).toBe(5);
    expect(samples(text, 'countapp_worker_metrics_scraped').map((s) => [s.labels.worker, s.value]).sort()).toEqual(workerIds.map((id) => [id, 1]));
    expect(samples(text, 'countapp_worker_up').map((s) => s.value)).toEqual([1, 1]);
    for (const name of ['countapp_worker_wal_group_records_count', 'countapp_worker_wal_fsync_seconds_count', 'countapp_worker_persist_round_seconds_count', 'process_cpu_seconds_total']) {
      expect(samples(text, name).map((s) => s.labels.worker).filter(Boolean).sort(), name).toEqual(workerIds);
    }
    // The coordinator's own process metrics have no worker label; its requests are timed by route.
    expect(samples(text, 'process_cpu_seconds_total').filter((s) => s.labels.worker === undefined)).toHaveLength(1);
    expect(samples(text, 'countapp_http_request_duration_seconds_count').find((s) => s.labels.role === 'coordinator' && s.labels.route === 'ingest')?.value).toBe(4);
    expect(samples(text, 'countapp_http_requests_total').find((s) => s.labels.role === 'worker' && s.labels.route === 'countByQuery' && s.labels.status === '200')?.value).toBe(1);

    // A worker that cannot answer: the scrape still answers, and says whose metrics are missing.
    const [pid] = await cluster.workerPids();
    signal(pid!, 'SIGSTOP');
    try {
      const started = Date.now();
      const partial = await (await fetch(`${cluster.url}/metrics`)).text();
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(samples(partial, 'countapp_worker_metrics_scraped').find((s) => s.labels.worker === workerIds[0])?.value).toBe(0);
      expect(samples(partial, 'countapp_worker_items_accepted_total').map((s) => s.labels.worker)).toEqual([workerIds[1]]);
    } finally {
      signal(pid!, 'SIGCONT');
    }
  });
});

describe('logs', () => {
  it('start-up warnings land in coordinator.log; log_level applies at start and on reload; every line is JSON', async () => {
    const cluster = await startCluster({ workers: 1, config: { log_level: 'warn', wrokers: 3 } });
    const coordinatorLog = path.join(cluster.dir, 'logs', 'coordinator.log');
    const workerLog = cluster.workerLogFile(cluster.workerUrls[0]!);
    const first = logRecords(coordinatorLog);
    expect(first.find((r) => /config key `wrokers` is unknown/.test(r.msg))).toMatchObject({ level: 'warn', name: 'coordinator' });
    expect(first.filter((r) => r.level === 'info')).toEqual([]);
    expect(logRecords(workerLog).filter((r) => r.level === 'info')).toEqual([]);

    cluster.writeConfig({ log_level: 'info', wrokers: undefined });
    await waitFor(() => logRecords(coordinatorLog).some((r) => r.level === 'info' && /^config reloaded/.test(r.msg)), 15_000, 'an info line once log_level is info');
    // The worker got the new level too: its next persist of new items is an info line.
    expect((await cluster.post([{ id: 'x', tenant: 't' }])).status).toBe(200);
    await waitFor(() => logRecords(workerLog).some((r) => r.level === 'info' && /^persisted 1 id/.test(r.msg)), 15_000, 'the worker logging at info');
  });

  it('logrotate\'s copytruncate works on the open log files: after truncation the next lines start the file, no hole, nothing lost', async () => {
    const cluster = await startCluster({ workers: 1 });
    const files = [path.join(cluster.dir, 'logs', 'coordinator.log'), cluster.workerLogFile(cluster.workerUrls[0]!)];
    // What logrotate's copytruncate does: copy, then truncate the file in place while it is open.
    for (const file of files) {
      fs.copyFileSync(file, `${file}.1`);
      fs.truncateSync(file, 0);
    }
    // Large enough to be forwarded unparsed: the worker refuses it and both log the same id.
    const bad = await cluster.post([...Array.from({ length: 100 }, (_, i) => ({ id: `id-${i}`, tenant: 't' })), { id: 7, tenant: 't' }]);
    expect(bad.status).toBe(400);
    const id = bad.body.error.id as string;
    await waitFor(() => files.every((file) => fs.readFileSync(file, 'utf8').includes(id)), 10_000, 'the error id in both logs after truncation');
    for (const file of files) {
      const bytes = fs.readFileSync(file);
      expect(bytes.indexOf(0), `${path.basename(file)} has no hole of NUL bytes`).toBe(-1);
      expect(bytes.toString('utf8', 0, 1)).toBe('{');
      expect(logRecords(file).some((r) => r.errorId === id)).toBe(true);
    }
  });
});
