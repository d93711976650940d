/**
 * Hostile input against one real cluster (a coordinator and two workers with small
 * limits): every bad request gets the status the README's error table names, a JSON error
 * `{"error": {"code", "message", "id"}}` whose id finds its log line, never a stack trace
 * or HTML, and nothing of a refused batch is stored. Every input goes to the coordinator
 * and, where a worker would see it too, straight to a worker (workers validate as well).
 * Each test stands alone (any one can run by itself, in any order); after whichever ran,
 * `afterAll` checks that the cluster survived them and that no refused batch surfaced later.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode } from '../../shared/errors.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { startCluster, stopAllClusters, type Cluster } from '../helpers/cluster.js';

const LIMITS = { max_body_bytes: 65_536, max_batch_items: 100, max_id_length: 64, max_tenant_length: 64 };
/** A hostile request that gets no answer within this is a hang, and a failure. */
const REQUEST_TIMEOUT_MS = 15_000;
/** How long a logged line may take to reach the coordinator's piped output or a log file. */
const LOG_TIMEOUT_MS = 5_000;
/** worker_persist is 1 s in the harness: convergence on every worker well within this. */
const CONVERGE_TIMEOUT_MS = 10_000;

let cluster: Cluster;
let initialPids: number[] = [];

beforeAll(async () => {
  cluster = await startCluster({ workers: 2, config: { ...LIMITS } });
  initialPids = (await cluster.workerPids()).sort((a, b) => a - b);
});

afterAll(async () => {
  try {
    await expectSurvived(initialPids, 0, freshTenants);
  } finally {
    await stopAllClusters();
  }
});

// ---------------------------------------------------------------------------------------
// Helpers

/** An HTTP answer as it came over the wire: the raw text, so a stack trace or HTML shows. */
interface Answer {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly allow: string | undefined;
  readonly text: string;
}

interface Target {
  readonly name: 'coordinator' | 'worker';
  readonly url: string;
}

/** The coordinator, and the first worker asked directly. */
function targets(): Target[] {
  return [
    { name: 'coordinator', url: cluster.url },
    { name: 'worker', url: cluster.workerUrls[0]! },
  ];
}

/** fetch, bounded, keeping the raw body text. */
async function send(base: string, pathname: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(`${base}${pathname}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...init });
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type') ?? undefined,
    allow: response.headers.get('allow') ?? undefined,
    text,
  };
}

/** `POST /items` with `Content-Type: application/json` (unless `contentType` says otherwise) and the body as given. */
function postRaw(base: string, body: string | Uint8Array, contentType = 'application/json'): Promise<Answer> {
  return send(base, '/items', { method: 'POST', headers: { 'content-type': contentType }, body });
}

interface RawRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** Written one by one; writing stops as soon as an answer arrives. */
  readonly chunks: readonly Buffer[];
}

/**
 * One request through node:http on its own connection (no agent), for what fetch cannot
 * send: a chunked body without Content-Length, written piece by piece. Resolves with the
 * answer once it has fully arrived; rejects when none arrives within the timeout (a hang)
 * or the connection fails before an answer.
 */
function rawRequest(base: string, options: RawRequest): Promise<Answer> {
  const url = new URL(base);
  return new Promise<Answer>((resolve, reject) => {
    let answered = false;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const req = http.request({ host: url.hostname, port: Number(url.port), method: options.method, path: options.path, headers: options.headers, agent: false });
    const timer = setTimeout(() => {
      settle(() => reject(new Error(`no answer to ${options.method} ${options.path} within ${REQUEST_TIMEOUT_MS} ms (the server hangs)`)));
      req.destroy();
    }, REQUEST_TIMEOUT_MS);
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const header = (name: string): string | undefined => {
          const value = res.headers[name];
          return Array.isArray(value) ? value.join(', ') : value;
        };
        settle(() => resolve({ status: res.statusCode ?? 0, contentType: header('content-type'), allow: header('allow'), text: Buffer.concat(chunks).toString('utf8') }));
        req.destroy();
      });
      res.on('error', (err) => settle(() => reject(new Error(`the answer to ${options.method} ${options.path} broke off: ${err.message}`))));
    });
    req.on('error', (err) => {
      // Once the answer is on its way, a write refused by the closed connection (EPIPE/ECONNRESET) is expected.
      if (!answered) settle(() => reject(new Error(`${options.method} ${options.path} failed before any answer: ${err.message}`)));
    });
    void (async () => {
      for (const chunk of options.chunks) {
        if (answered || settled || req.destroyed) return;
        if (!req.write(chunk)) {
          await Promise.race([new Promise((r) => req.once('drain', r)), new Promise((r) => req.once('response', r)), new Promise((r) => req.once('close', r))]);
        }
        // Let the server's answer in between the pieces.
        await sleep(1);
      }
      if (!answered && !settled && !req.destroyed) req.end();
    })();
  });
}

/** Every line the cluster logged: the coordinator's output and every file under logs/ (one per worker). */
function allLogs(): string {
  let text = cluster.output();
  const logs = path.join(cluster.dir, 'logs');
  for (const name of fs.readdirSync(logs, { recursive: true, encoding: 'utf8' })) {
    const file = path.join(logs, name);
    try {
      if (fs.statSync(file).isFile()) text += `\n${fs.readFileSync(file, 'utf8')}`;
    } catch {
      // Rotated or removed meanwhile.
    }
  }
  return text;
}

interface ExpectedError {
  readonly status: number;
  readonly code: ErrorCode;
  /** For a bad batch item: the index of the first bad item. Absent otherwise. */
  readonly index?: number;
  /** For a 405: the methods the Allow header must list. */
  readonly allow?: readonly string[];
}

/**
 * The contract for every error answer: the status, Content-Type JSON, exactly
 * `{"error": {"code", "message", "id", "index"?}}` with the expected code, a message fit to
 * show, no stack trace or HTML, and an id that finds its line in the logs.
 */
async function expectError(answer: Answer, expected: ExpectedError, where: string): Promise<void> {
  const context = `${where} answered ${answer.status} ${answer.contentType ?? '(no content-type)'}: ${answer.text.slice(0, 400)}`;
  // The test's own expectation agrees with the registry.
  expect(ERROR_CODES[expected.code].status, `registry status of ${expected.code}`).toBe(expected.status);
  expect(answer.status, context).toBe(expected.status);
  expect(answer.contentType ?? '', context).toMatch(/^application\/json\s*(;|$)/i);
  expect(answer.text, context).not.toContain('    at ');
  expect(answer.text, context).not.toMatch(/<html|<!doctype|<pre>/i);
  let body: any;
  try {
    body = JSON.parse(answer.text);
  } catch {
    body = undefined;
  }
  expect(body !== null && typeof body === 'object' && !Array.isArray(body), `${context} (body is not a JSON object)`).toBe(true);
  expect(Object.keys(body), context).toEqual(['error']);
  const error = body.error;
  expect(error !== null && typeof error === 'object', context).toBe(true);
  expect(Object.keys(error).every((key) => ['code', 'message', 'id', 'index'].includes(key)), `${context} (unexpected keys)`).toBe(true);
  expect(error.code, context).toBe(expected.code);
  expect(typeof error.message === 'string' && error.message.trim().length > 0, `${context} (message)`).toBe(true);
  expect(typeof error.id === 'string' && error.id.trim().length > 0, `${context} (id)`).toBe(true);
  if (expected.index === undefined) expect(error, context).not.toHaveProperty('index');
  else expect(error.index, `${context} (index of the first bad item)`).toBe(expected.index);
  if (expected.allow !== undefined) {
    const allowed = (answer.allow ?? '').split(',').map((method) => method.trim().toUpperCase()).filter(Boolean);
    expect(allowed.length, `${context} (no Allow header)`).toBeGreaterThan(0);
    for (const method of expected.allow) expect(allowed, `${context} (Allow: ${answer.allow ?? ''})`).toContain(method);
  }
  const id = String(error.id);
  await cluster.waitFor(() => allLogs().includes(id), LOG_TIMEOUT_MS, `the error id ${id} of ${where} to appear in the coordinator's output or a worker's log`);
}

const freshTenants: string[] = [];

/** A tenant no other test uses; every one is checked again at the end. */
function fresh(label: string): string {
  const tenant = `h${freshTenants.length}-${label.replace(/[^A-Za-z0-9-]/g, '-')}`.slice(0, 48);
  freshTenants.push(tenant);
  return tenant;
}

/** Nothing of a refused batch was stored: every worker, asked directly, counts 0 for `tenant`. */
async function expectNothingApplied(tenant: string, where: string): Promise<void> {
  for (const url of cluster.workerUrls) {
    expect(await cluster.count(tenant, url), `${where}: ${tenant} counted on ${url} after a refused batch`).toBe(0);
  }
}

/** Valid items for `tenant`, the ones a refused batch carries along. */
function validItems(tenant: string, n = 2): Array<{ id: string; tenant: string }> {
  return Array.from({ length: n }, (_, i) => ({ id: `ok-${i}`, tenant }));
}

/** Sends `body(tenant)` as a batch to both targets; each answer must be `expected`, and nothing stored. */
async function refusedBatch(label: string, body: (tenant: string) => string | Uint8Array, expected: ExpectedError, contentType?: string): Promise<void> {
  for (const target of targets()) {
    const tenant = fresh(`${label}-${target.name}`);
    const where = `${target.name} POST /items (${label})`;
    await expectError(await postRaw(target.url, body(tenant), contentType), expected, where);
    await expectNothingApplied(tenant, where);
  }
}

/** Every file under `dir`, relative, with '/' separators. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => {
      try {
        return !fs.statSync(path.join(dir, name)).isDirectory();
      } catch {
        return false; // gone meanwhile (a temp file renamed)
      }
    })
    .map((name) => name.split(path.sep).join('/'));
}

/** Nothing was written outside db/ and logs/ of the cluster's folder (besides the harness's own files). */
function expectOnlyClusterFiles(): void {
  const stray = filesUnder(cluster.dir).filter((name) => !name.startsWith('db/') && !name.startsWith('logs/') && name !== 'config.yaml' && name !== 'coordinator.out');
  expect(stray, `files outside db/ and logs/ in ${cluster.dir}`).toEqual([]);
}

/** Waits until every worker, asked directly at `pathname`, answers 200 `{"count": expected}`. */
async function convergeAt(pathname: string, expected: number): Promise<void> {
  await cluster.waitFor(async () => {
    const answers = await Promise.all(cluster.workerUrls.map((url) => send(url, pathname)));
    return answers.every((answer) => answer.status === 200 && JSON.parse(answer.text).count === expected);
  }, CONVERGE_TIMEOUT_MS, `every worker to answer {"count": ${expected}} at ${pathname}`);
}

/** A 200 `{"count": expected}` with a JSON Content-Type. */
function expectCount(answer: Answer, expected: number, where: string): void {
  const context = `${where} answered ${answer.status}: ${answer.text.slice(0, 300)}`;
  expect(answer.status, context).toBe(200);
  expect(answer.contentType ?? '', context).toMatch(/^application\/json\s*(;|$)/i);
  expect(JSON.parse(answer.text), context).toEqual({ count: expected });
}

/**
 * The cluster survived: every worker up with the same pid as at `pids`, restarted no more
 * than `restarts` times in all, the coordinator running, nothing written outside db/ and
 * logs/, and none of the `refused` tenants counted on any worker (a refused batch must not
 * surface later either, e.g. at a persist).
 */
async function expectSurvived(pids: readonly number[], restarts: number, refused: readonly string[]): Promise<void> {
  const status = await cluster.status();
  expect(status.workers).toHaveLength(2);
  for (const worker of status.workers) expect(worker.state, JSON.stringify(worker)).toBe('up');
  expect(status.workers.reduce((sum, worker) => sum + worker.restarts, 0), JSON.stringify(status.workers)).toBe(restarts);
  expect((await cluster.workerPids()).sort((a, b) => a - b)).toEqual(pids);
  expect(cluster.exited).toBeUndefined();
  for (const tenant of refused) {
    for (const url of cluster.workerUrls) expect(await cluster.count(tenant, url), `${tenant} on ${url}`).toBe(0);
  }
  expectOnlyClusterFiles();
}

/** A JSON string literal, as a client would write it (`\uXXXX` escapes kept verbatim). */
const q = (value: string): string => JSON.stringify(value);

// ---------------------------------------------------------------------------------------

describe('hostile input against a real cluster', () => {
  it('1. a body that is not JSON → 400 invalid_json, nothing stored', async () => {
    // The valid items come first; the body then breaks off.
    await refusedBatch('not-json', (t) => `[{"id":"ok-0","tenant":${q(t)}},{"id":`, { status: 400, code: 'invalid_json' });
    await refusedBatch('not-json-bare', () => '[{"id":', { status: 400, code: 'invalid_json' });
  });

  it('2. invalid UTF-8 bytes inside a JSON string → 400 invalid_utf8, nothing stored', async () => {
    await refusedBatch('bad-utf8', (t) => Buffer.concat([
      Buffer.from(`[{"id":"ok-0","tenant":${q(t)}},{"id":"bad-`),
      Buffer.from([0xff, 0xfe, 0xc3]), // 0xff never occurs in UTF-8; 0xc3 alone is a truncated sequence
      Buffer.from(`","tenant":${q(t)}}]`),
    ]), { status: 400, code: 'invalid_utf8' });
  });

  it.each([
    ['an object', (t: string) => JSON.stringify({ id: 'ok-0', tenant: t })],
    ['an object wrapping the items', (t: string) => JSON.stringify({ items: validItems(t) })],
    ['a string', (t: string) => JSON.stringify(t)],
    ['a number', () => '42'],
    ['null', () => 'null'],
  ])('3. JSON that is not an array (%s) → 400 invalid_batch, nothing stored', async (label, body) => {
    await refusedBatch(`not-array-${label}`, body, { status: 400, code: 'invalid_batch' });
  });

  it('4. an item missing `id` → 400 invalid_item at its index, nothing stored', async () => {
    await refusedBatch('no-id', (t) => JSON.stringify([...validItems(t), { tenant: t }, { tenant: t }]), { status: 400, code: 'invalid_item', index: 2 });
  });

  it('5. an item missing `tenant` → 400 invalid_item at its index, nothing stored', async () => {
    await refusedBatch('no-tenant', (t) => JSON.stringify([...validItems(t, 1), { id: 'x' }, ...validItems(t, 1), { id: 'y' }]), { status: 400, code: 'invalid_item', index: 1 });
  });

  it.each([
    ['a number id', (t: string) => ({ id: 42, tenant: t })],
    ['a boolean tenant', () => ({ id: 'x', tenant: true })],
    ['a null id', (t: string) => ({ id: null, tenant: t })],
    ['an object id', (t: string) => ({ id: { toString: 'x' }, tenant: t })],
    ['a number tenant', () => ({ id: 'x', tenant: 7 })],
  ])('6. non-string values (%s) → 400 invalid_item at its index, nothing stored', async (label, bad) => {
    await refusedBatch(`non-string-${label}`, (t) => JSON.stringify([...validItems(t), bad(t), ...validItems(t)]), { status: 400, code: 'invalid_item', index: 2 });
  });

  it.each([
    ['an empty id', (t: string) => ({ id: '', tenant: t })],
    ['an empty tenant', () => ({ id: 'x', tenant: '' })],
    ['both empty', () => ({ id: '', tenant: '' })],
  ])('7. empty strings (%s) → 400 invalid_item at its index, nothing stored', async (label, bad) => {
    await refusedBatch(`empty-${label}`, (t) => JSON.stringify([...validItems(t, 1), bad(t), bad(t)]), { status: 400, code: 'invalid_item', index: 1 });
  });

  it.each([
    ['an array of arrays', (t: string) => JSON.stringify([[{ id: 'a', tenant: t }]]), 0],
    ['an array nested after valid items', (t: string) => JSON.stringify([...validItems(t), [{ id: 'a', tenant: t }]]), 2],
    ['an id that is an array', (t: string) => JSON.stringify([...validItems(t), { id: ['a'], tenant: t }]), 2],
    ['a tenant that is an object', (t: string) => JSON.stringify([...validItems(t, 1), { id: 'a', tenant: { name: t } }]), 1],
  ])('8. extra nesting (%s) → 400 invalid_item at its index, nothing stored', async (label, body, index) => {
    await refusedBatch(`nesting-${label}`, body, { status: 400, code: 'invalid_item', index });
  });

  /** A well-formed batch of valid items for `tenant`, padded with whitespace to `size` bytes. */
  const paddedBatch = (tenant: string, size: number): Buffer => {
    const head = JSON.stringify(validItems(tenant)).slice(0, -1);
    return Buffer.from(`${head}${' '.repeat(size - head.length - 1)}]`);
  };

  it('9a. a body over max_body_bytes with a Content-Length → 413 body_too_large, nothing stored', async () => {
    for (const target of targets()) {
      for (const size of [LIMITS.max_body_bytes + 1, 4 * LIMITS.max_body_bytes]) {
        const tenant = fresh(`too-large-${target.name}`);
        const body = paddedBatch(tenant, size);
        expect(body.length).toBe(size);
        const where = `${target.name} POST /items (${size} bytes, Content-Length)`;
        const answer = await rawRequest(target.url, {
          method: 'POST',
          path: '/items',
          headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
          chunks: [body],
        });
        await expectError(answer, { status: 413, code: 'body_too_large' }, where);
        await expectNothingApplied(tenant, where);
      }
      // At the limit exactly, the same kind of body is taken: the limit is the limit, not less.
      const tenant = `at-limit-${target.name}`;
      const answer = await postRaw(target.url, paddedBatch(tenant, LIMITS.max_body_bytes));
      expect(answer.status, `${target.name}: a body of exactly max_body_bytes: ${answer.text}`).toBe(200);
    }
  });

  it('9b. a chunked body (no Content-Length) over max_body_bytes → 413 body_too_large, no hang, nothing stored', async () => {
    for (const target of targets()) {
      const tenant = fresh(`chunked-${target.name}`);
      // 4x the limit in 8 KiB pieces; the writer stops once the answer is in.
      const body = paddedBatch(tenant, 4 * LIMITS.max_body_bytes);
      const chunks: Buffer[] = [];
      for (let at = 0; at < body.length; at += 8192) chunks.push(body.subarray(at, at + 8192));
      const where = `${target.name} POST /items (chunked, ${body.length} bytes)`;
      const answer = await rawRequest(target.url, {
        method: 'POST',
        path: '/items',
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        chunks,
      });
      await expectError(answer, { status: 413, code: 'body_too_large' }, where);
      await expectNothingApplied(tenant, where);
    }
  });

  it('10. too many items (max_batch_items + 1) → 400 too_many_items, nothing stored', async () => {
    await refusedBatch('too-many', (t) => JSON.stringify(validItems(t, LIMITS.max_batch_items + 1)), { status: 400, code: 'too_many_items' });
  });

  it('11. an id over max_id_length → 400 invalid_item at its index, nothing stored', async () => {
    const long = 'i'.repeat(LIMITS.max_id_length + 1);
    await refusedBatch('long-id', (t) => JSON.stringify([...validItems(t), { id: 'i'.repeat(LIMITS.max_id_length), tenant: t }, { id: long, tenant: t }]), { status: 400, code: 'invalid_item', index: 3 });
  });

  it('12. a tenant over max_tenant_length → 400 invalid_item at its index, nothing stored', async () => {
    const long = 't'.repeat(LIMITS.max_tenant_length + 1);
    await refusedBatch('long-tenant', (t) => JSON.stringify([...validItems(t), { id: 'x', tenant: long }]), { status: 400, code: 'invalid_item', index: 2 });
    // Nothing of that over-long tenant exists either (it cannot even be asked for: 400 below).
    for (const target of targets()) {
      await expectError(await send(target.url, `/items/count?tenant=${long}`), { status: 400, code: 'invalid_tenant' }, `${target.name} GET count of an over-long tenant`);
    }
  });

  // A valid batch is taken whatever else it is declared as (test/integration/http-edges.test.ts).
  it.each([
    ['multipart/form-data; boundary=x'],
    ['image/png'],
    ['audio/mpeg'],
    ['video/mp4'],
    [' Multipart/Mixed'],
  ])('13. a Content-Type that is clearly not a batch (%s) → 400 unsupported_content_type, nothing stored', async (type) => {
    await refusedBatch(`type-${type}`, (t) => JSON.stringify(validItems(t)), { status: 400, code: 'unsupported_content_type' }, type);
  });

  it.each([
    ['GET', '/nope'],
    ['GET', '/items/a/b/c'],
    ['POST', '/nope'],
    ['GET', '/items/a/count/extra'],
  ])('14. an unknown route (%s %s) → 404 not_found', async (method, pathname) => {
    for (const target of targets()) {
      await expectError(await send(target.url, pathname, { method }), { status: 404, code: 'not_found' }, `${target.name} ${method} ${pathname}`);
    }
  });

  it.each([
    ['DELETE', '/items', ['POST']],
    ['PUT', '/items', ['POST']],
    ['PATCH', '/items', ['POST']],
    ['GET', '/items', ['POST']],
    ['POST', '/items/t/count', ['GET']],
    ['DELETE', '/items/t/count', ['GET']],
    ['POST', '/items/count?tenant=t', ['GET']],
  ])('15. a wrong method (%s %s) → 405 method_not_allowed with Allow, nothing stored', async (method, pathname, allow) => {
    for (const target of targets()) {
      const tenant = fresh(`method-${method}-${target.name}`);
      const where = `${target.name} ${method} ${pathname}`;
      // A body that would be a valid batch: a wrong method must not store it.
      const init: RequestInit = method === 'GET' ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(validItems(tenant)) };
      await expectError(await send(target.url, pathname, init), { status: 405, code: 'method_not_allowed', allow }, where);
      await expectNothingApplied(tenant, where);
    }
  });

  it('16a. GET /items/..%2F..%2Fetc/count is the legal tenant "../../etc": counted, and no file escapes db/', async () => {
    const tenant = '../../etc';
    const database = path.join(cluster.dir, 'db');
    const outside = [path.resolve(database, tenant), path.resolve(cluster.dir, 'etc'), path.resolve(database, 'etc')];
    const existedBefore = outside.map((file) => fs.existsSync(file));

    const posted = await postRaw(cluster.url, JSON.stringify([{ id: 'passwd', tenant }]));
    expect(posted.status, posted.text).toBe(200);
    expect(JSON.parse(posted.text)).toEqual({ accepted: 1 });

    const segment = '/items/..%2F..%2Fetc/count';
    await convergeAt(segment, 1);
    await convergeAt(`/items/count?tenant=${encodeURIComponent(tenant)}`, 1);
    for (const target of targets()) expectCount(await send(target.url, segment), 1, `${target.name} GET ${segment}`);
    expectCount(await send(cluster.url, `/items/count?tenant=${encodeURIComponent(tenant)}`), 1, 'coordinator GET /items/count?tenant=../../etc');

    // Its file is directly inside db/, and nothing was written anywhere else.
    const file = tenantFilePath(database, tenant);
    expect(path.dirname(file)).toBe(database);
    await cluster.waitFor(() => fs.existsSync(file), CONVERGE_TIMEOUT_MS, `the tenant file ${file}`);
    expectOnlyClusterFiles();
    outside.forEach((file, i) => {
      if (!existedBefore[i]) expect(fs.existsSync(file), `${file} was created`).toBe(false);
    });
  });

  it.each([
    ['/items/%00/count'],
    ['/items/a%00b/count'],
    ['/items/%0A/count'],
    ['/items/%7F/count'],
    ['/items/count?tenant=%00'],
    ['/items/count?tenant=x%0Dy'],
    // C1 controls (U+0080-U+009F) as UTF-8: NEL, the first and the last.
    ['/items/%C2%85/count'],
    ['/items/a%C2%80/count'],
    ['/items/count?tenant=x%C2%9Fy'],
    ['/counts?tenant=ok&tenant=%C2%85'],
  ])('16b. a tenant with control characters (%s) → 400 invalid_tenant', async (pathname) => {
    for (const target of targets()) {
      await expectError(await send(target.url, pathname), { status: 400, code: 'invalid_tenant' }, `${target.name} GET ${pathname}`);
    }
  });

  it.each([
    ['/items/%E0%A4%A/count', true],
    ['/items/%/count', true],
    ['/items/%ZZ/count', true],
    ['/items/%C3/count', true],
    // The worker's query string is not a client's concern: only the coordinator's strict decoding is contract.
    ['/items/count?tenant=%E0%A4%A', false],
    ['/items/count?tenant=%', false],
  ])('16c. a malformed percent-escape (%s) → 400 bad_request', async (pathname, onWorker) => {
    for (const target of targets()) {
      if (target.name === 'worker' && !onWorker) continue;
      await expectError(await send(target.url, pathname), { status: 400, code: 'bad_request' }, `${target.name} GET ${pathname}`);
    }
  });

  it.each([
    ['/items/count?tenant='],
    ['/items/count'],
    ['/items/count?other=x'],
  ])('16d. a missing or empty tenant parameter (%s) → 400 invalid_tenant', async (pathname) => {
    for (const target of targets()) {
      await expectError(await send(target.url, pathname), { status: 400, code: 'invalid_tenant' }, `${target.name} GET ${pathname}`);
    }
  });

  it('16e. GET /items/count?tenant=.. answers for the tenant ".." (200, counted)', async () => {
    const tenant = '..';
    const pathname = '/items/count?tenant=..';
    for (const target of targets()) expectCount(await send(target.url, pathname), 0, `${target.name} GET ${pathname} before any item`);
    const posted = await postRaw(cluster.url, JSON.stringify([{ id: 'dotdot', tenant }]));
    expect(posted.status, posted.text).toBe(200);
    await convergeAt(pathname, 1);
    expectCount(await send(cluster.url, pathname), 1, `coordinator GET ${pathname}`);
    expect(fs.existsSync(tenantFilePath(path.join(cluster.dir, 'db'), tenant))).toBe(true);
    expectOnlyClusterFiles();
  });

  it.each([
    ['an id "\\u0000"', (t: string) => `{"id":"a\\u0000b","tenant":${q(t)}}`],
    ['a tenant "\\u0000"', () => `{"id":"x","tenant":"t\\u0000"}`],
    ['an id "\\u001f"', (t: string) => `{"id":"\\u001f","tenant":${q(t)}}`],
    ['a tenant "\\u007f"', () => `{"id":"x","tenant":"\\u007f"}`],
    ['an id with a raw U+0085 (NEL, C1)', (t: string) => `{"id":"a\u0085","tenant":${q(t)}}`],
    ['a tenant with a raw U+0080 (C1)', () => `{"id":"x","tenant":"t\u0080"}`],
    ['an id "\\u009f" (C1)', (t: string) => `{"id":"\\u009f","tenant":${q(t)}}`],
    ['an id with a newline', (t: string) => `{"id":"line\\nbreak","tenant":${q(t)}}`],
    ['an id "\\ud800" (lone high surrogate)', (t: string) => `{"id":"\\ud800","tenant":${q(t)}}`],
    ['an id "\\udc00" (lone low surrogate)', (t: string) => `{"id":"x\\udc00","tenant":${q(t)}}`],
    ['a tenant "\\ud800"', () => `{"id":"x","tenant":"t\\ud800"}`],
  ])('17. control characters and lone surrogates in a batch (%s) → 400 invalid_item at its index, nothing stored', async (label, bad) => {
    await refusedBatch(`control-${label}`, (t) => `[{"id":"ok-0","tenant":${q(t)}},{"id":"ok-1","tenant":${q(t)}},${bad(t)},${bad(t)}]`, { status: 400, code: 'invalid_item', index: 2 });
  });

  it.each([
    ['an id with a raw U+0085 (NEL)', (t: string) => ({ id: 'a\u0085', tenant: t })],
    ['a tenant "\\u0080"', () => ({ id: 'x', tenant: '\u0080' })],
    ['an id "\\u009f"', (t: string) => ({ id: '\u009f', tenant: t })],
  ])('17b. C1 control characters in a large batch (%s; over 2 KB: the worker validates it) → 400 invalid_item at its index, nothing stored', async (label, bad) => {
    await refusedBatch(`c1-large-${label}`, (t) => {
      const text = JSON.stringify([...validItems(t, 60), bad(t)]);
      expect(Buffer.byteLength(text)).toBeGreaterThan(2048);
      return label.includes('raw') ? text : text.replace(/[\u0080-\u009f]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
    }, { status: 400, code: 'invalid_item', index: 60 });
  });

  it('18. right after hostile input, a valid batch at the limits is counted exactly, and the cluster survived it: every worker up, none restarted', async () => {
    const pidsBefore = (await cluster.workerPids()).sort((a, b) => a - b);
    const restartsBefore = (await cluster.status()).workers.reduce((sum, worker) => sum + worker.restarts, 0);
    // Its own hostile input, so it does not depend on the tests before it.
    const refusedHere = freshTenants.length;
    await refusedBatch('survivor-not-json', (t) => `[{"id":"ok-0","tenant":${q(t)}},{"id":`, { status: 400, code: 'invalid_json' });
    await refusedBatch('survivor-bad-item', (t) => JSON.stringify([...validItems(t), { id: 7, tenant: t }]), { status: 400, code: 'invalid_item', index: 2 });
    for (const target of targets()) {
      const tenant = fresh(`survivor-chunked-${target.name}`);
      const body = paddedBatch(tenant, 2 * LIMITS.max_body_bytes);
      const chunks: Buffer[] = [];
      for (let at = 0; at < body.length; at += 8192) chunks.push(body.subarray(at, at + 8192));
      const where = `${target.name} POST /items (survivor, chunked, ${body.length} bytes)`;
      await expectError(await rawRequest(target.url, { method: 'POST', path: '/items', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, chunks }), { status: 413, code: 'body_too_large' }, where);
    }
    for (const url of cluster.workerUrls) {
      await expectError(await send(url, '/kill', { method: 'POST', headers: { 'x-countapp-secret': 'wrong' } }), { status: 403, code: 'forbidden' }, `${url} POST /kill (survivor)`);
    }

    const tenant = `survivor-${'s'.repeat(LIMITS.max_tenant_length - 9)}`;
    expect(tenant.length).toBe(LIMITS.max_tenant_length);
    const items = [
      { id: 'a', tenant },
      { id: 'b', tenant },
      { id: 'a', tenant }, // a duplicate: counted once
      { id: 'i'.repeat(LIMITS.max_id_length), tenant }, // exactly at the limit
      { id: 'é✓𝄞', tenant }, // non-ASCII, well-formed
    ];
    const answer = await postRaw(cluster.url, JSON.stringify(items));
    expect(answer.status, answer.text).toBe(200);
    expect(JSON.parse(answer.text)).toEqual({ accepted: items.length });
    await cluster.waitFor(async () => {
      const counts = await Promise.all(cluster.workerUrls.map((url) => cluster.count(tenant, url)));
      return counts.every((count) => count === 4);
    }, CONVERGE_TIMEOUT_MS, `every worker to count 4 for ${tenant}`);
    expect(await cluster.count(tenant)).toBe(4);
    expectCount(await send(cluster.url, `/items/${encodeURIComponent(tenant)}/count`), 4, 'coordinator GET /items/{tenant}/count');

    // Every worker persisted meanwhile (the survivor converged): none of this test's refused batches shows up anywhere.
    await expectSurvived(pidsBefore, restartsBefore, freshTenants.slice(refusedHere));
  });

  it('19. the worker control endpoint /kill: 401 without the secret, 403 with a wrong one; the worker keeps serving', async () => {
    const before = await cluster.status();
    for (const url of cluster.workerUrls) {
      for (const method of ['GET', 'POST']) {
        await expectError(await send(url, '/kill', { method }), { status: 401, code: 'unauthorized' }, `${url} ${method} /kill without the secret`);
        await expectError(await send(url, '/kill', { method, headers: { 'x-countapp-secret': '' } }), { status: 401, code: 'unauthorized' }, `${url} ${method} /kill with an empty secret`);
        for (const wrong of ['wrong', 'x'.repeat(64), '0'.repeat(32)]) {
          await expectError(await send(url, '/kill', { method, headers: { 'x-countapp-secret': wrong } }), { status: 403, code: 'forbidden' }, `${url} ${method} /kill with a wrong secret`);
        }
      }
      // Still alive and serving, the same process.
      const health = await send(url, '/');
      expect(health.status, health.text).toBe(200);
      expect(JSON.parse(health.text).status).toBe('ok');
      expect(await cluster.count('no-such-tenant', url)).toBe(0);
    }
    // The coordinator exposes no kill switch to clients.
    await expectError(await send(cluster.url, '/kill', { method: 'POST' }), { status: 404, code: 'not_found' }, 'coordinator POST /kill');
    const after = await cluster.status();
    expect(after.workers.map((w) => [w.url, w.state, w.pid])).toEqual(before.workers.map((w) => [w.url, 'up', w.pid]));
    const tenant = 'after-kill-attempts';
    for (const url of cluster.workerUrls) expect((await cluster.post(validItems(tenant), url)).status).toBe(200);
  });

  it('20. workers (and the coordinator) listen on 127.0.0.1 only (/proc/net/tcp, tcp6)', () => {
    /** LISTEN (state 0A) sockets by local port → their local addresses (hex, as the kernel writes them). */
    const listening = new Map<number, string[]>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text: string;
      try {
        text = fs.readFileSync(table, 'utf8');
      } catch {
        continue; // no IPv6 on this machine
      }
      for (const line of text.split('\n').slice(1)) {
        const fields = line.trim().split(/\s+/);
        if (fields.length < 4 || fields[3] !== '0A') continue;
        const [address, portHex] = fields[1]!.split(':') as [string, string];
        const port = parseInt(portHex, 16);
        listening.set(port, [...(listening.get(port) ?? []), address]);
      }
    }
    const ports = [...cluster.workerUrls.map((url) => Number(new URL(url).port)), cluster.port];
    for (const port of ports) {
      const addresses = listening.get(port) ?? [];
      expect(addresses.length, `a LISTEN socket on port ${port}`).toBeGreaterThan(0);
      expect(addresses, `port ${port} must be bound to 127.0.0.1 (0100007F) only`).toEqual(addresses.map(() => '0100007F'));
    }
  });

});
