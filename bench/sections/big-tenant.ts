import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '../../shared/log.js';
import type { Cluster } from '../../test/helpers/cluster.js';
import { makeTempDir, removeTempDir } from '../../test/helpers/temp-dir.js';
import { waitFor } from '../../test/helpers/wait.js';
import { FileStore } from '../../worker/store/files.js';
import { startBenchCluster } from '../cluster.js';
import { countOf, getJson, postItems, type Answer } from '../http.js';
import type { Profile } from '../profile.js';
import type { Context, Row, SectionResult } from '../result.js';
import { median } from '../stats.js';
import { distinctBatches } from '../workload.js';
import { logSize, persistLinesAfter, type PersistLine } from '../worker-log.js';

/**
 * (3) Persist and count cost for one big tenant. A 2-worker cluster (worker_persist 1 s,
 * durability fsync) is loaded with `bigIds` ids of tenant "big" through the coordinator
 * until both workers count them all and have nothing pending or being persisted. Then `bigNew` new ids go
 * straight to worker A; the figures are A's persist time of that round (from its log
 * line) and how soon after that line worker B, polled every ~1 ms from the moment of
 * posting, answers the new count. The same cost is also timed in-process with the real
 * FileStore (two stores on one database folder standing for two workers).
 */
const TENANT = 'big';
const PERSIST_TARGET = { op: '<=' as const, value: 50 };

/** Posts bodies with `parallel` requests in flight. */
async function postAll(url: string, batches: Iterable<{ body: string; items: number }>, parallel: number): Promise<void> {
  const iterator = batches[Symbol.iterator]();
  const lane = async (): Promise<void> => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) await postItems(url, next.value.body, next.value.items);
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

async function inCluster(ctx: Context, profile: Profile): Promise<{ rows: Row[]; raw: unknown }> {
  let cluster: Cluster | undefined;
  try {
    cluster = await startBenchCluster(2, { worker_persist: 1, durability: 'fsync' });
    const [a, b] = cluster.workerUrls as [string, string];
    const aLog = cluster.workerLogFile(a);
    const total = profile.bigIds + profile.bigNew;

    const loadStart = performance.now();
    await postAll(cluster.url, distinctBatches(TENANT, 'old-', profile.bigIds, profile.bigBatch), 4);
    const loadMs = performance.now() - loadStart;
    await waitFor(async () => {
      for (const url of [a, b]) {
        const { count } = await countOf(url, TENANT);
        const health = await getJson(`${url}/`);
        // Not persisting either: a round still under way would log its ids after the offset below.
        if (count !== profile.bigIds || health.body?.pending !== 0 || health.body?.persisting !== 0) return false;
      }
      return true;
    }, 300_000, `both workers to count ${profile.bigIds} with nothing pending or being persisted`);
    const settledMs = performance.now() - loadStart;
    ctx.progress(`big tenant: ${profile.bigIds.toLocaleString('en-US')} ids posted in ${(loadMs / 1000).toFixed(1)} s, persisted and counted by both workers after ${(settledMs / 1000).toFixed(1)} s`);

    // The new ids, straight to A; B is polled from the moment of posting.
    const offset = logSize(aLog);
    const body = [...distinctBatches(TENANT, 'new-', profile.bigNew, profile.bigNew)][0]!.body;
    let polling = true;
    let seen: Answer | undefined;
    let polls = 0;
    const poller = (async () => {
      const deadline = Date.now() + 30_000;
      while (polling && Date.now() < deadline) {
        const started = performance.now();
        const { count, answer } = await countOf(b, TENANT);
        polls++;
        if (count === total) {
          seen = answer;
          return;
        }
        const wait = 1 - (performance.now() - started);
        if (wait > 0) await sleep(wait);
      }
    })().catch((err: unknown) => err);
    let posted: Answer;
    try {
      posted = await postItems(a, body, profile.bigNew);
    } catch (err) {
      polling = false;
      await poller;
      throw err;
    }
    const failure = await poller;
    polling = false;
    if (failure instanceof Error) throw failure;
    if (seen === undefined) throw new Error(`worker B never counted ${total} within 30 s`);
    let line: PersistLine | undefined;
    await waitFor(() => {
      line = persistLinesAfter(aLog, offset).find((l) => l.ids > 0);
      return line !== undefined;
    }, 10_000, 'worker A to log the persist of the new ids');
    const persist = line!;
    if (persist.ids !== profile.bigNew || persist.tenants !== 1) {
      ctx.problem(`big tenant: expected A's persist line to say ${profile.bigNew} id(s) of 1 tenant(s), got: ${persist.line}`);
    }
    const lag = seen.doneAt - persist.at;
    ctx.progress(`big tenant: A persisted ${persist.ids} ids in ${persist.ms} ms; B answered ${total} ${lag.toFixed(1)} ms after that log line (its request took ${seen.ms.toFixed(2)} ms; ${polls} polls; ${(seen.doneAt - posted.doneAt).toFixed(0)} ms after the 200)`);
    const section = `3. Big tenant: ${profile.bigNew.toLocaleString('en-US')} new ids into ${profile.bigIds.toLocaleString('en-US')} persisted`;
    return {
      rows: [
        { section, measure: 'persist of the new ids (worker A log line, cluster)', value: persist.ms, unit: 'ms', target: PERSIST_TARGET },
        { section, measure: 'worker B answers the new count, after that log line', value: lag, unit: 'ms', note: 'log time has 1 ms resolution; < 0: B read the file before A logged' },
        { section, measure: 'worker B count request latency at that point', value: seen.ms, unit: 'ms' },
        { section, measure: 'worker B answers the new count, after the 200 to the post', value: seen.doneAt - posted.doneAt, unit: 'ms', note: 'includes the wait for A\'s next persist (worker_persist 1 s)' },
      ],
      raw: {
        cluster: '2 workers, worker_persist 1, durability fsync',
        loadSeconds: loadMs / 1000,
        settledSeconds: settledMs / 1000,
        persistLine: persist.line,
        persistMs: persist.ms,
        bSeesAfterLogLineMs: lag,
        bRequestMs: seen.ms,
        bSeesAfterPostMs: seen.doneAt - posted.doneAt,
        polls,
      },
    };
  } finally {
    await cluster?.cleanup();
  }
}

async function inProcess(ctx: Context, profile: Profile): Promise<{ rows: Row[]; raw: unknown }> {
  const dir = makeTempDir('countapp-bench-store-');
  try {
    const database = path.join(dir, 'db');
    fs.mkdirSync(database);
    const make = (name: string): FileStore => new FileStore({
      database, workerId: name, log: new Logger(name), secret: () => '', lockStaleMs: 5000, sync: () => true, handoffTimeoutMs: () => 5000,
    });
    const writer = make('bench-a');
    const reader = make('bench-b');
    const ids = (prefix: string, n: number): Map<string, string[]> => new Map([[TENANT, Array.from({ length: n }, (_, i) => `${prefix}${i}`)]]);
    const persist = async (map: Map<string, string[]>): Promise<void> => {
      const failed = await writer.persist(map);
      if (failed.size > 0) throw new Error('in-process: the persist failed');
      await writer.checkpoint();
    };

    let started = performance.now();
    await persist(ids('old-', profile.bigIds));
    const initialPersistMs = performance.now() - started;
    started = performance.now();
    const firstCount = await reader.count(TENANT);
    const initialCountMs = performance.now() - started;
    if (firstCount !== profile.bigIds) throw new Error(`in-process: the reader counts ${firstCount}, expected ${profile.bigIds}`);

    const persistMs: number[] = [];
    const countMs: number[] = [];
    for (let r = 0; r < profile.inProcessRepeats; r++) {
      started = performance.now();
      await persist(ids(`new${r}-`, profile.bigNew));
      persistMs.push(performance.now() - started);
      started = performance.now();
      const count = await reader.count(TENANT);
      countMs.push(performance.now() - started);
      const expected = profile.bigIds + (r + 1) * profile.bigNew;
      if (count !== expected) throw new Error(`in-process: the reader counts ${count}, expected ${expected}`);
    }
    ctx.progress(`big tenant in-process: persist of ${profile.bigNew} new ids ${persistMs.map((m) => m.toFixed(2)).join(', ')} ms; other store's count ${countMs.map((m) => m.toFixed(2)).join(', ')} ms`);
    const section = `3. Big tenant: ${profile.bigNew.toLocaleString('en-US')} new ids into ${profile.bigIds.toLocaleString('en-US')} persisted`;
    return {
      rows: [
        {
          section,
          measure: 'persist of the new ids, first after the big persist (in-process)',
          value: persistMs[0]!,
          unit: 'ms',
          target: PERSIST_TARGET,
        },
        { section, measure: `persist of the new ids, later rounds (in-process, median of ${persistMs.length - 1})`, value: median(persistMs.slice(1)), unit: 'ms' },
        { section, measure: 'count of the new ids by another store (in-process, median)', value: median(countMs), unit: 'ms' },
        { section, measure: `first persist of all ${profile.bigIds.toLocaleString('en-US')} ids (in-process)`, value: initialPersistMs, unit: 'ms' },
        { section, measure: `first count of all ${profile.bigIds.toLocaleString('en-US')} ids by another store (in-process)`, value: initialCountMs, unit: 'ms' },
      ],
      raw: { persistMs, countMs, initialPersistMs, initialCountMs },
    };
  } finally {
    removeTempDir(dir);
  }
}

export async function bigTenantSection(ctx: Context, profile: Profile): Promise<SectionResult> {
  const cluster = await inCluster(ctx, profile);
  const local = await inProcess(ctx, profile);
  return { rows: [...cluster.rows, ...local.rows], raw: { cluster: cluster.raw, inProcess: local.raw } };
}
