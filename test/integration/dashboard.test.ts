import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, startCluster, stopAllClusters } from '../helpers/cluster.js';
import { signal } from '../helpers/stop-process.js';

/**
 * The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core.
 * The page must show the 4 workers up, a SIGKILLed one going down and coming back with a
 * new pid, and its charts — with every resource from the coordinator itself (no CDN).
 */

/** Where a Chromium may be: CHROMIUM_PATH first, then Debian's and the usual names. */
const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((file): file is string => file !== undefined && file !== '');
const CHROMIUM = CANDIDATES.find((file) => fs.existsSync(file));

/** Kept after the run for a person to look at (test-results/ is not committed). */
const SCREENSHOT = path.join(REPO_ROOT, 'test-results', 'dashboard.png');

let browser: Browser | undefined;

/** Listens on `port` as soon as it is free (within `withinMs`); undefined when it never was. */
async function holdPort(port: number, withinMs: number): Promise<net.Server | undefined> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const server = net.createServer((socket) => socket.destroy());
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (listening) return server;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return undefined;
}

afterEach(async () => {
  await browser?.close();
  browser = undefined;
  await stopAllClusters();
});

describe('GET /dashboard in headless Chromium', () => {
  it('shows 4 workers up, one SIGKILLed going down and coming back, and its charts, with nothing from outside the coordinator', async (ctx) => {
    if (CHROMIUM === undefined) {
      ctx.skip(`no Chromium found (looked for ${CANDIDATES.join(', ')}): install Debian's chromium (\`apt-get install chromium\`, which .ci/run does as root) or set CHROMIUM_PATH`);
      return;
    }
    const cluster = await startCluster({ workers: 4 });
    // Something for the charts while the test runs: a batch and a count every 50 ms.
    let feeding = true;
    const feed = (async () => {
      for (let i = 0; feeding; i++) {
        await cluster.post(Array.from({ length: 50 }, (_, j) => ({ id: `id-${i}-${j}`, tenant: `t-${j % 5}` }))).catch(() => undefined);
        await cluster.count(`t-${i % 5}`).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    // Root in a container needs --no-sandbox; everything else is Chromium's defaults.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const requested: string[] = [];
    const pageErrors: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${cluster.url}/dashboard`);

    const rows = page.locator('#workers tr');
    const up = page.locator('#workers tr[data-state="up"]');
    await expect.poll(() => up.count(), { timeout: 20_000 }).toBe(4);
    expect(await rows.count()).toBe(4);
    await expect.poll(() => page.locator('#ready').textContent(), { timeout: 10_000 }).toBe('ready');

    const victim = rows.nth(1);
    const id = (await victim.getAttribute('data-worker'))!;
    const url = cluster.workerUrls[1]!;
    expect(id).toBe(`worker-${new URL(url).port}`);
    const row = page.locator(`#workers tr[data-worker="${id}"]`);
    // SIGKILL it and take its port at once, so its respawns fail (with growing backoff)
    // and it stays down long enough for a page that refreshes every 2 s to show it.
    let blocker: net.Server | undefined;
    let pid = 0;
    for (let attempt = 0; blocker === undefined && attempt < 3; attempt++) {
      pid = Number(await row.getAttribute('data-pid'));
      expect(await cluster.workerPids()).toContain(pid);
      signal(pid, 'SIGKILL');
      blocker = await holdPort(Number(new URL(url).port), 2_000);
      // The coordinator respawned it before the port was free for us: kill that one instead.
      if (blocker === undefined) await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('up');
    }
    expect(blocker, 'the killed worker\'s port taken before its respawn').toBeDefined();
    let downState: string | null;
    try {
      await expect.poll(async () => (downState = await row.getAttribute('data-state')), { timeout: 15_000, interval: 50 }).not.toBe('up');
      expect(['backing-off', 'starting', 'suspect']).toContain(downState!);
      await expect.poll(() => row.textContent(), { timeout: 10_000 }).toContain('already in use');
    } finally {
      await new Promise((resolve) => blocker!.close(resolve));
    }
    // Back: up with a new pid, restarts counted, and why it went.
    await expect.poll(async () => (await row.getAttribute('data-state')) === 'up' && !['', String(pid)].includes((await row.getAttribute('data-pid')) ?? ''), { timeout: 30_000 }).toBe(true);
    expect(Number(await row.locator('td').nth(5).textContent())).toBeGreaterThanOrEqual(1);
    await expect.poll(() => up.count(), { timeout: 20_000 }).toBe(4);

    // Two charts drawn by uPlot, with the items/s series in their legend.
    await expect.poll(() => page.locator('.uplot canvas').count(), { timeout: 10_000 }).toBe(2);
    expect(await page.locator('#chart-items').textContent()).toContain('items/s');
    expect(await page.locator('#chart-latency').textContent()).toContain('p99');

    feeding = false;
    await feed;
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`[dashboard] ${id} (pid ${pid}) went ${downState!} after SIGKILL and came back; screenshot: ${SCREENSHOT}`);

    expect(pageErrors).toEqual([]);
    expect(requested.filter((url) => !url.startsWith(`${cluster.url}/`))).toEqual([]);
  }, 120_000);
});
