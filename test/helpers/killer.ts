import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from './cluster.js';

/**
 * Chaos for the tests that need it: every 1–2 s (drawn from `next`, a seeded random in
 * [0, 1)), SIGKILLs one worker that `GET /` lists as up, until `stopBy` (epoch ms).
 * Resolves with how many it killed. The supervisor respawns them; cleanup stops them all.
 */
export async function killWorkersUntil(cluster: Cluster, options: { readonly stopBy: number; readonly next: () => number }): Promise<number> {
  let kills = 0;
  while (Date.now() < options.stopBy) {
    await sleep(1000 + options.next() * 1000);
    const up = (await cluster.status()).workers.filter((w) => w.state === 'up' && w.pid !== null);
    const victim = up[Math.floor(options.next() * up.length)];
    if (victim === undefined) continue;
    try {
      process.kill(victim.pid!, 'SIGKILL');
      kills++;
    } catch {
      // already gone
    }
  }
  return kills;
}
