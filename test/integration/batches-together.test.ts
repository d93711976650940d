import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PARTS_HEADER } from '../../shared/batch-parts.js';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { startCluster, stopAllClusters } from '../helpers/cluster.js';
import { killWorkersUntil } from '../helpers/killer.js';
import { Ledger, postUntil } from '../helpers/ledger.js';
import { seededRandom } from '../helpers/random.js';
import { TempDirs } from '../helpers/temp-dir.js';

/**
 * Batches of 2 KiB and more are not parsed by the coordinator; while its upstream
 * requests are busy, those that arrive go to one worker together (`POST
 * /internal/batches`), each validated, logged and answered on its own. Here against a
 * real cluster: every client must get the answer its batch would have had alone.
 */
const temp = new TempDirs();

afterEach(async () => {
  await stopAllClusters();
  temp.removeAll();
});

function secretFile(secret: string): string {
  const file = path.join(temp.make('countapp-secret-'), 'secret');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return file;
}

/** A batch of `n` items of `tenant`, over 2 KiB (the coordinator does not parse it). */
function bigBatch(tenant: string, n: number, from = 0): string {
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: `item-${from + i}-${'x'.repeat(20)}`, tenant })));
}

/** The error of an answer without its id (which differs per request). */
function errorOf(body: unknown): unknown {
  const { id: _id, ...rest } = (body as { error: { id: string } }).error;
  return rest;
}

function mergedSamples(scrape: string): number {
  // Observations of more than one batch per upstream request: the sum minus the +Inf count of 1-batch groups.
  const le1 = Number(/countapp_coalescer_merged_batches_bucket\{le="1"\} (\d+)/.exec(scrape)?.[1] ?? 0);
  const total = Number(/countapp_coalescer_merged_batches_count (\d+)/.exec(scrape)?.[1] ?? 0);
  return total - le1;
}

describe('large batches sent to a worker together', () => {
  it('each client gets its own answer (good ones counted, bad ones the 400 they get alone), and nothing leaks between neighbours', async () => {
    const cluster = await startCluster({ workers: 2 });
    const bad = [
      // An unclosed string: joined into one array it could swallow the next batch.
      `[{"id":"a","tenant":"bad","note":"${'y'.repeat(3000)}`,
      // Valid JSON, an invalid item at index 57.
      JSON.stringify(Array.from({ length: 100 }, (_, i) => (i === 57 ? { id: 5, tenant: 'bad' } : { id: `ok-${i}-${'z'.repeat(20)}`, tenant: 'bad' }))),
      // Not an array.
      JSON.stringify({ items: bigBatch('bad', 60) }),
    ];
    // What each bad batch gets from a worker when it comes alone.
    const alone = await Promise.all(bad.map((body) => cluster.post(body, cluster.workerUrls[0])));
    for (const answer of alone) expect(answer.status).toBe(400);

    const before = mergedSamples((await cluster.request('/metrics')).body as string);
    const rounds = 4;
    for (let round = 0; round < rounds; round++) {
      const bodies = Array.from({ length: 48 }, (_, i) => bigBatch(`t${i % 6}`, 100, (round * 48 + i) * 100));
      const sent = [...bodies, ...bad];
      const answers = await Promise.all(sent.map((body) => cluster.post(body)));
      answers.slice(0, bodies.length).forEach((answer) => expect([answer.status, answer.body]).toEqual([200, { accepted: 100 }]));
      answers.slice(bodies.length).forEach((answer, i) => {
        expect(answer.status).toBe(400);
        expect(errorOf(answer.body)).toEqual(errorOf(alone[i]!.body));
      });
    }
    const after = mergedSamples((await cluster.request('/metrics')).body as string);
    console.log(`upstream requests that carried more than one large batch: ${after - before}`);
    expect(after - before).toBeGreaterThan(0);

    // Exact counts: 4 rounds × 48 batches × 100 distinct ids over 6 tenants; nothing of the bad ones.
    const expected = (rounds * 48 * 100) / 6;
    await cluster.waitFor(async () => {
      const counts = await Promise.all(['t0', 't1', 't2', 't3', 't4', 't5', 'bad'].map((tenant) => cluster.count(tenant)));
      return counts.slice(0, 6).every((count) => count === expected) && counts[6] === 0;
    }, 15_000, `every tenant to count ${expected} and "bad" 0`);
  }, 60_000);

  it('the worker route: needs the secret, checks the lengths, answers each batch in order', async () => {
    const secret = randomBytes(24).toString('hex');
    const cluster = await startCluster({ workers: 1, config: { secret_file: secretFile(secret) } });
    const worker = `${cluster.workerUrls[0]}/internal/batches`;
    const parts = [bigBatch('w', 80), '[{"id":"only","tenant":"w"}]', '[{"id":"x"}]', 'not json'];
    const body = parts.join('');
    const post = (headers: Record<string, string>, text = body): Promise<Response> => fetch(worker, { method: 'POST', headers, body: text });

    expect((await post({ [PARTS_HEADER]: parts.map((p) => p.length).join(',') })).status).toBe(401);
    expect((await post({ [SECRET_HEADER]: 'wrong'.padEnd(secret.length, '!'), [PARTS_HEADER]: '1' })).status).toBe(403);
    const short = await post({ [SECRET_HEADER]: secret, [PARTS_HEADER]: '10,20' });
    expect(short.status).toBe(400);
    expect(((await short.json()) as { error: { message: string } }).error.message).toMatch(/adds up to 30 bytes; the body has \d+/);
    expect((await post({ [SECRET_HEADER]: secret, [PARTS_HEADER]: 'ten' })).status).toBe(400);

    const answer = await post({ [SECRET_HEADER]: secret, [PARTS_HEADER]: parts.map((p) => p.length).join(',') });
    expect(answer.status).toBe(200);
    const { answers } = (await answer.json()) as { answers: [number, Record<string, unknown>][] };
    expect(answers.map(([status]) => status)).toEqual([200, 200, 400, 400]);
    expect(answers[0]![1]).toEqual({ accepted: 80 });
    expect(answers[1]![1]).toEqual({ accepted: 1 });
    expect((answers[2]![1].error as { code: string; index: number }).index).toBe(0);
    expect((answers[3]![1].error as { code: string }).code).toBe('invalid_json');
    await cluster.waitFor(async () => (await cluster.count('w')) === 81, 10_000, 'the two good batches counted');
  }, 60_000);

  it('loses and over-counts nothing when workers are SIGKILLed while they take large batches together', async () => {
    const seed = Date.now() % 100_000;
    const cluster = await startCluster({ workers: 3, config: { worker_persist: 1, kill_timeout: 3, lock_stale: 2 } });
    const ledger = new Ledger();
    const before = mergedSamples((await cluster.request('/metrics')).body as string);
    const until = Date.now() + 10_000;
    const tenants = ['k0', 'k1', 'k2', 'k3'];
    const [kills] = await Promise.all([
      killWorkersUntil(cluster, { stopBy: until - 1000, next: seededRandom(seed) }),
      // 60 items of ~45 bytes: over 2 KiB, so the coordinator does not parse them.
      postUntil(cluster, ledger, { clients: 12, until, tenants, prefix: `large-${'q'.repeat(24)}`, batch: 60 }),
    ]);
    const merged = mergedSamples((await cluster.request('/metrics')).body as string) - before;
    await cluster.waitReady(20_000);
    let result = await ledger.check(cluster);
    await cluster.waitFor(async () => {
      result = await ledger.check(cluster);
      return result.lost === 0 && result.overCounted === 0 && tenants.every((t) => ledger.acked.has(t));
    }, 20_000, 'every worker to count exactly what was acknowledged');
    console.log(`large batches together under SIGKILL (seed ${seed}): ${ledger.summary()}; ${kills} SIGKILLs; ${merged} upstream requests carried several; lost ${result.lost}; over-counted ${result.overCounted}`);
    expect(result).toMatchObject({ lost: 0, overCounted: 0 });
    expect(kills).toBeGreaterThan(0);
    expect(merged).toBeGreaterThan(0);
    expect(ledger.ok).toBeGreaterThan(0);
  }, 90_000);
});
