import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, it } from 'vitest';
import { startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { killWorkersUntil } from '../helpers/killer.js';
import { seededRandom } from '../helpers/random.js';

afterEach(stopAllClusters);

const TENANTS = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
/** Half the ids come from this small shared pool (many duplicates), half are new (a lost one shows). */
const HOT_IDS = 1000;
const LOAD_SECONDS = 15;
const CLIENTS = 6;
const WORKER_PERSIST = 1;


interface Ledger {
  /** Distinct ids per tenant of every batch answered 200. */
  acked: Map<string, Set<string>>;
  /** Distinct ids per tenant of every batch sent, whatever the answer. */
  sent: Map<string, Set<string>>;
  batches: { ok: number; failed: number };
}

function record(into: Map<string, Set<string>>, batch: readonly { id: string; tenant: string }[]): void {
  for (const { id, tenant } of batch) {
    let ids = into.get(tenant);
    if (ids === undefined) into.set(tenant, (ids = new Set()));
    ids.add(id);
  }
}

async function client(cluster: Cluster, name: number, next: () => number, ledger: Ledger, until: number): Promise<void> {
  let fresh = 0;
  while (Date.now() < until) {
    const size = 1 + Math.floor(next() * 40);
    // Hot ids repeat across batches, clients and tenants; fresh ones are seen once, unless a batch is retried.
    const batch = Array.from({ length: size }, () => ({
      id: next() < 0.5 ? `hot-${Math.floor(next() * HOT_IDS)}` : `c${name}-${fresh++}`,
      tenant: TENANTS[Math.floor(next() * TENANTS.length)]!,
    }));
    record(ledger.sent, batch);
    try {
      const res = await cluster.post(batch);
      if (res.status === 200) {
        record(ledger.acked, batch);
        ledger.batches.ok++;
      } else {
        ledger.batches.failed++;
      }
    } catch {
      ledger.batches.failed++;
    }
  }
}

async function countsEverywhere(cluster: Cluster): Promise<Map<string, number[]>> {
  const counts = new Map<string, number[]>();
  for (const tenant of TENANTS) {
    counts.set(tenant, await Promise.all(cluster.workerUrls.map((url) => cluster.count(tenant, url))));
  }
  return counts;
}

it('loses and over-counts nothing while workers are SIGKILLed and the config changes under load', async () => {
  const seed = Date.now() % 100_000;
  const next = seededRandom(seed);
  const cluster = await startCluster({ workers: 4, config: { worker_persist: WORKER_PERSIST, kill_timeout: 3, lock_stale: 2 } });
  const allWorkers = [...cluster.workerUrls];
  const ledger: Ledger = { acked: new Map(), sent: new Map(), batches: { ok: 0, failed: 0 } };
  const until = Date.now() + LOAD_SECONDS * 1000;
  let kills = 0;
  let configEdits = 0;

  const killer = killWorkersUntil(cluster, { stopBy: until - 1000, next }).then((n) => {
    kills = n;
  });
  const editor = (async () => {
    await sleep(LOAD_SECONDS * 250);
    cluster.writeConfig({ workers: allWorkers.slice(0, 3) }); // remove one
    configEdits++;
    await sleep(LOAD_SECONDS * 250);
    cluster.writeConfig({ workers: [allWorkers[3]!, ...allWorkers.slice(1, 3)] }); // add it back, remove another
    configEdits++;
    await sleep(LOAD_SECONDS * 250);
    cluster.writeConfig({ workers: allWorkers }); // everyone back
    configEdits++;
  })();
  await Promise.all([...Array.from({ length: CLIENTS }, (_, i) => client(cluster, i, next, ledger, until)), killer, editor]);

  // Load stopped. Every worker must come to count exactly what was acknowledged.
  const quiet = Date.now();
  await cluster.waitReady(20_000);
  let converged = true;
  try {
    await waitFor(async () => {
      const counts = await countsEverywhere(cluster);
      return TENANTS.every((tenant) => counts.get(tenant)!.every((count) => count === (ledger.acked.get(tenant)?.size ?? 0)));
    }, (WORKER_PERSIST + 15) * 1000, 'every worker to count exactly what was acknowledged');
  } catch {
    converged = false;
  }
  const convergence = (Date.now() - quiet) / 1000;
  const counts = await countsEverywhere(cluster);
  let lost = 0;
  let overCounted = 0;
  for (const tenant of TENANTS) {
    const acked = ledger.acked.get(tenant)?.size ?? 0;
    const sent = ledger.sent.get(tenant)?.size ?? 0;
    for (const count of counts.get(tenant)!) {
      lost = Math.max(lost, acked - count);
      overCounted = Math.max(overCounted, count - sent);
    }
  }
  const acknowledged = TENANTS.reduce((sum, tenant) => sum + (ledger.acked.get(tenant)?.size ?? 0), 0);
  console.log(
    `chaos (seed ${seed}): ${ledger.batches.ok} batches acknowledged, ${ledger.batches.failed} refused; ` +
      `${acknowledged} distinct acknowledged items; lost ${lost}; over-counted ${overCounted}; ` +
      `${kills} SIGKILLs; ${configEdits} config edits; converged in ${convergence.toFixed(2)} s after the load stopped`,
  );
  expect(lost).toBe(0);
  expect(overCounted).toBe(0);
  expect(converged).toBe(true);
  expect(ledger.batches.ok).toBeGreaterThan(0);

  // A whole-cluster restart changes nothing.
  const before = await countsEverywhere(cluster);
  await cluster.restart();
  await waitFor(async () => {
    const after = await countsEverywhere(cluster);
    return TENANTS.every((tenant) => after.get(tenant)!.every((count) => count === before.get(tenant)![0]));
  }, 10_000, 'the counts after a restart to equal those before');
}, 120_000);
