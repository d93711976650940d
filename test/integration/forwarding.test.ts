/**
 * What the coordinator tells a client when forwarding does not go to plan, with real
 * processes: a worker paused (SIGSTOP) past forward_deadline may still apply the batch,
 * so the client gets 504 `outcome_unknown`, and the item is counted once the worker runs
 * again; a `workers` entry that is a coordinator is found at the first hop (508
 * `forwarding_loop`, logged with its URL) instead of being retried until the deadline.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, stopAllClusters } from '../helpers/cluster.js';

afterEach(stopAllClusters);

/** Generous bounds for a slow machine, not figures. */
const SLOW = 3;

describe('forwarding outcomes', () => {
  it('a worker paused past forward_deadline: the client gets 504 outcome_unknown, and the item is counted after SIGCONT', async () => {
    // The supervisor kills a worker as hung after 5 s of failed health checks; the pause stays well under that.
    const cluster = await startCluster({ workers: 1, config: { forward_timeout: 1, forward_deadline: 2 } });
    const [pid] = await cluster.workerPids();
    expect(pid).toBeGreaterThan(0);
    const tenant = 'paused-worker';
    const started = Date.now();
    process.kill(pid!, 'SIGSTOP');
    let answer;
    try {
      answer = await cluster.post([{ id: 'maybe', tenant }]);
    } finally {
      process.kill(pid!, 'SIGCONT');
    }
    const tookMs = Date.now() - started;
    console.log(`[outcome] answer after ${tookMs} ms: ${answer.status} ${JSON.stringify(answer.body)}`);
    expect(answer.status).toBe(504);
    expect(answer.body.error.code).toBe('outcome_unknown');
    expect(answer.body.error.message).toMatch(/may or may not be stored/);
    expect(tookMs).toBeLessThan(2_000 * SLOW + 2_000);
    // The truth of "may": the worker had the batch in its socket and applies it now.
    await cluster.waitFor(async () => (await cluster.count(tenant, cluster.workerUrls[0])) === 1, 10_000, 'the paused worker to count the item');
    expect(await cluster.count(tenant)).toBe(1);
    expect(cluster.output()).toContain(answer.body.error.id);
    // Same worker process: it was paused, not killed and respawned.
    expect(await cluster.workerPids()).toEqual([pid]);
  });

  it('a workers entry that is another coordinator: 508 forwarding_loop at the first hop, logged with its URL, nothing stored', async () => {
    const target = await startCluster({ workers: 1 });
    // A worker run by hand as far as this config says (forwarded to, not spawned), and not this coordinator's own port.
    const loopUrl = `http://127.0.0.1:${target.port}`;
    const looping = await startCluster({ workers: 0, config: { workers: [{ url: loopUrl, spawn: false }] } });
    const tenant = 'looped';
    const started = Date.now();
    const answer = await looping.post([{ id: 'x', tenant }]);
    const tookMs = Date.now() - started;
    console.log(`[loop] answer after ${tookMs} ms: ${answer.status} ${JSON.stringify(answer.body)}`);
    expect(answer.status).toBe(508);
    expect(answer.body.error.code).toBe('forwarding_loop');
    // At once, not after forward_deadline (15 s) of retries.
    expect(tookMs).toBeLessThan(1_000 * SLOW);
    // The coordinator that was used as a worker logged the refusal under the id the client got...
    await target.waitFor(() => target.output().includes(answer.body.error.id), 5_000, 'the 508 id in the target coordinator log');
    // ...and the forwarding one logged an error naming the URL that loops.
    await looping.waitFor(() => /"level":"error".*forwarding loop: the workers entry http:\/\/127\.0\.0\.1:\d+ is a coordinator/.test(looping.output()), 5_000, 'the forwarding-loop error line');
    const count = await looping.request(`/items/count?tenant=${tenant}`);
    expect(count.status).toBe(508);
    await sleep(1_500);
    expect(await target.count(tenant, target.workerUrls[0])).toBe(0);
    expect(await target.count(tenant)).toBe(0);
  });
});
