import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { Pending } from '../../worker/pending.js';
import { COMPACT_ID_MAP_TYPE } from '../../worker/store/id-map.js';
import { listSegments } from '../../worker/wal.js';
import { replaySegments } from '../../worker/wal-records.js';
import { waitFor } from '../helpers/wait.js';
import { startWorker, type WorkerHandle } from '../helpers/worker-process.js';

/**
 * A real worker taking hand-overs in both forms: the compact one workers send now
 * (`tenant␟id␟id␞…`) and the JSON object earlier versions sent. Either way the ids are
 * counted, and its write-ahead log holds them as JSON, which a restart replays.
 */
describe('hand-overs in the compact form and in JSON', () => {
  let worker: WorkerHandle;

  beforeAll(async () => {
    // No rounds and no publishes: the log segments stay, to be read below.
    worker = await startWorker({ config: { worker_persist: 3600, worker_publish: 0 } });
  });

  afterAll(async () => {
    await worker?.stop();
  });

  const handOver = async (body: string, type: string): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${worker.url}/internal/merge`, { method: 'POST', body, headers: { 'content-type': type, [SECRET_HEADER]: worker.secret } });
    return { status: res.status, body: await res.json() };
  };

  const countOf = async (tenant: string): Promise<number> => {
    const res = await fetch(`${worker.url}/items/${encodeURIComponent(tenant)}/count`);
    return ((await res.json()) as { count: number }).count;
  };

  it('counts ids handed over in either form, tenants with quotes and commas included, and logs them as JSON', async () => {
    expect(await handOver('h\u001fa\u001fb\u001fc\u001ehe said "x, y"\u001f{"id":1}\u001f\\', COMPACT_ID_MAP_TYPE)).toEqual({ status: 200, body: { failed: [] } });
    expect(await handOver('{"j":["x","y"]}', 'application/json')).toEqual({ status: 200, body: { failed: [] } });
    await waitFor(async () => (await countOf('h')) === 3 && (await countOf('he said "x, y"')) === 2 && (await countOf('j')) === 2, 10_000, 'the handed-over ids counted');

    const replayed = new Pending();
    const { badLines } = await replaySegments(worker.walFolder, await listSegments(worker.walFolder), replayed);
    expect(badLines).toBe(0);
    expect(replayed.take()).toEqual(new Map([['h', ['a', 'b', 'c']], ['he said "x, y"', ['{"id":1}', '\\']], ['j', ['x', 'y']]]));
  });

  it('refuses a compact hand-over that is not tenants each followed by ids, or not UTF-8, and logs nothing of it', async () => {
    const segmentsBefore = await listSegments(worker.walFolder);
    const before = new Pending();
    await replaySegments(worker.walFolder, segmentsBefore, before);
    for (const body of ['only-a-tenant', '\u001fno-tenant', 't\u001fa\u001e']) {
      const answer = await handOver(body, COMPACT_ID_MAP_TYPE);
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ error: { code: 'invalid_batch', message: expect.stringMatching(/^A hand-over must be tenants with their ids/) } });
    }
    const notUtf8 = await fetch(`${worker.url}/internal/merge`, { method: 'POST', body: Buffer.from([0x74, 0x1f, 0xff, 0xfe]), headers: { 'content-type': COMPACT_ID_MAP_TYPE, [SECRET_HEADER]: worker.secret } });
    expect(notUtf8.status).toBe(400);
    expect(await notUtf8.json()).toMatchObject({ error: { code: 'invalid_utf8' } });
    const after = new Pending();
    await replaySegments(worker.walFolder, await listSegments(worker.walFolder), after);
    expect(after.ids).toBe(before.ids);
  });
});
