import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

/**
 * An open-loop count prober, run as its own process (so the load generator's busy event
 * loop does not inflate its timings): on `{type: 'start', url, tenants, rate, durationMs,
 * query?}` it sends `GET /items/t<k>/count` (k random below `tenants`; `?<query>` appended
 * when given, e.g. `consistency=strong`) at a fixed rate, each on schedule whether or not
 * earlier ones have answered, and times each; then it answers `{type: 'result',
 * latencies, failures, statuses}`. WARMUP_REQUESTS untimed counts go first: the first
 * counts after a cluster starts took 20-60 ms (connections opened, code paths compiled in
 * this process, the coordinator and the workers), which is start-up, not count latency.
 */
const WARMUP_REQUESTS = 32;
interface Start {
  readonly type: 'start';
  readonly url: string;
  readonly tenants: number;
  readonly rate: number;
  readonly durationMs: number;
  readonly query?: string;
}

async function probe(start: Start): Promise<void> {
  const pool = new Pool(start.url, { connections: 16, pipelining: 1 });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let failures = 0;
  const running = new Set<Promise<void>>();
  await Promise.allSettled(Array.from({ length: WARMUP_REQUESTS }, (_, i) => pool.request({ method: 'GET', path: `/items/t${i % start.tenants}/count${start.query === undefined ? '' : `?${start.query}`}` }).then((res) => res.body.text())));
  const period = 1000 / start.rate;
  const began = performance.now();
  for (let i = 0; ; i++) {
    const due = began + i * period;
    if (due - began >= start.durationMs) break;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const tenant = `t${Math.floor(Math.random() * start.tenants)}`;
    const sent = performance.now();
    const request = pool.request({ method: 'GET', path: `/items/${tenant}/count${start.query === undefined ? '' : `?${start.query}`}` }).then(async (res) => {
      const text = await res.body.text();
      const ms = performance.now() - sent;
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (res.statusCode === 200 && typeof JSON.parse(text).count === 'number') latencies.push(ms);
      else failures++;
    }).catch(() => {
      failures++;
    });
    const tracked = request.finally(() => running.delete(tracked));
    running.add(tracked);
  }
  await Promise.all(running);
  await pool.close();
  process.send?.({ type: 'result', latencies, failures, statuses });
}

process.on('message', (message: Start) => {
  if (message.type === 'start') {
    probe(message).catch((err: unknown) => {
      process.send?.({ type: 'result', latencies: [], failures: -1, statuses: {}, error: String(err) });
    });
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.send?.({ type: 'ready' });
