import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, stopAllClusters, type Cluster } from '../helpers/cluster.js';

/**
 * Issue: a valid config plus a 31 MB unknown key froze the coordinator for 27.8 s (count
 * requests included) and took 2.4 GB. Now the file is refused above 1 MiB before it is read,
 * and what passes the cap is parsed off the event loop. (At start-up: see cli.test.ts.)
 */

/** The longest a count request may wait behind the config reload: generous (the target is 100 ms), for a loaded machine. */
const MAX_GAP_MS = 1000;

afterEach(async () => {
  await stopAllClusters();
});

/** Sends count requests one after another until `done()` and returns the longest time between two answers. */
async function longestGapBetweenAnswers(cluster: Cluster, done: () => boolean): Promise<{ gapMs: number; answers: number }> {
  let last = performance.now();
  let gapMs = 0;
  let answers = 0;
  while (!done()) {
    const res = await fetch(`${cluster.url}/items/count?tenant=probe`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ count: 1 });
    const now = performance.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
    answers += 1;
  }
  return { gapMs, answers };
}

/** Posts the probe item and waits until every worker counts it, so every count answer below is 1. */
async function probe(cluster: Cluster): Promise<void> {
  expect((await cluster.post([{ id: 'p', tenant: 'probe' }])).status).toBe(200);
  for (const url of cluster.workerUrls) await cluster.waitFor(async () => (await cluster.count('probe', url)) === 1, 10_000, `the probe counted by ${url}`);
}

function configText(port: number, workerPorts: readonly number[], extra: string): string {
  return `port: ${port}\nworkers: [${workerPorts.map((p) => `http://127.0.0.1:${p}`).join(', ')}]\nworker_persist: 1\nconfig_check: 1\n${extra}`;
}

describe('a large config file', () => {
  it('on a reload: refused with its size, the last good config kept, while count requests keep answering promptly', async () => {
    const cluster = await startCluster({ workers: 2 });
    await probe(cluster);

    // A valid config (with a change that must not be applied) plus a 32 MB unknown key.
    const huge = `${configText(cluster.port, cluster.workerUrls.map((url) => Number(url.split(':').pop())), 'worker_persist: 2\n')}junk: "${'x'.repeat(32 * 1024 * 1024)}"\n`;
    cluster.writeConfigText(huge);
    let rejectedAt: number | undefined;
    const { gapMs, answers } = await longestGapBetweenAnswers(cluster, () => {
      if (rejectedAt === undefined && /config.yaml rejected: .* is 32 MiB/.test(cluster.output())) rejectedAt = performance.now();
      // Two more seconds: the periodic re-reads (every second) see the same file.
      return rejectedAt !== undefined && performance.now() - rejectedAt > 2000;
    });
    console.log(`32 MiB config reload: ${answers} count answers meanwhile, longest gap ${gapMs.toFixed(0)} ms`);
    expect(gapMs).toBeLessThan(MAX_GAP_MS);
    const rejections = cluster.output().split('\n').filter((line) => line.includes('rejected'));
    expect(rejections).toEqual([expect.stringMatching(new RegExp(`config.yaml rejected: .*config.yaml is 32 MiB \\(${Buffer.byteLength(huge)} bytes\\), over the 1 MiB limit for a config file; keeping the last good config`))]);
    expect(cluster.output()).not.toMatch(/reloaded/);
    expect((await cluster.status()).workers.every((w) => w.state === 'up')).toBe(true);
  }, 90_000);

  it('on a reload: a file under the cap that is slow to parse is refused after 5 s, and count requests never wait for it', async () => {
    const cluster = await startCluster({ workers: 2 });
    await probe(cluster);

    // ~870 KB: many keys make the YAML parser take tens of seconds (see coordinator/config-file.ts).
    let junk = 'junk:\n';
    for (let i = 0; i < 50_000; i++) junk += `  key${i}: ${i}\n`;
    cluster.writeConfigText(configText(cluster.port, cluster.workerUrls.map((url) => Number(url.split(':').pop())), junk));
    const { gapMs, answers } = await longestGapBetweenAnswers(cluster, () => /rejected/.test(cluster.output()));
    console.log(`slow-to-parse config reload: ${answers} count answers meanwhile, longest gap ${gapMs.toFixed(0)} ms`);
    expect(gapMs).toBeLessThan(MAX_GAP_MS);
    expect(cluster.output()).toMatch(/config.yaml rejected: The config took more than 5 s to parse \(\d+(\.\d)? KiB\); simplify it; keeping the last good config/);
  }, 90_000);
});
