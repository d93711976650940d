import fs from 'node:fs';
import path from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORWARDED_BY_HEADER } from '../../coordinator/forwarded-by.js';
import { PARTS_HEADER } from '../../shared/batch-parts.js';
import { SECRET_HEADER } from '../../shared/control-secret.js';
import { openApiText } from '../../shared/openapi.js';
import { RouteTable, type ServerRole } from '../../shared/routes.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { REPO_ROOT, startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { signal } from '../helpers/stop-process.js';
import { startWorker, type WorkerHandle } from '../helpers/worker-process.js';

/**
 * The OpenAPI documents against the servers, both ways: every route a server answers is in
 * its document (the route table and the document list the same operations; every other
 * method gets 405 with the documented `Allow`, every other path 404), and every documented
 * operation and status is answered by a real server — a coordinator cluster, one without
 * workers, and workers started directly with a known secret — with a body its schema
 * accepts.
 */

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown>; 'x-error-codes'?: string[] }> }>> };
const ROLES: readonly ServerRole[] = ['coordinator', 'worker'];
const docs = Object.fromEntries(ROLES.map((role) => [role, JSON.parse(openApiText(role)) as Doc])) as Record<ServerRole, Doc>;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'];

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

async function call(base: string, method: string, pathname: string, init: { body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(`${base}${pathname}`, { method, headers: init.headers, ...(init.body === undefined ? {} : { body: init.body }) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Every (method, path, status) a document lists: `GET /items/{tenant}/count 200`. */
function documented(role: ServerRole): string[] {
  const keys: string[] = [];
  for (const [pathname, item] of Object.entries(docs[role].paths)) {
    for (const [method, operation] of Object.entries(item)) {
      for (const status of Object.keys(operation.responses)) if (status !== 'default') keys.push(`${method.toUpperCase()} ${pathname} ${status}`);
    }
  }
  return keys.sort();
}

describe('the OpenAPI documents', () => {
  it.each(ROLES)('openapi/%s.json in the repository is what the code serves (`make openapi` rewrites it)', (role) => {
    expect(fs.readFileSync(path.join(REPO_ROOT, 'openapi', `${role}.json`), 'utf8')).toBe(openApiText(role));
  });

  it.each(ROLES)('the %s document is valid OpenAPI 3.1', async (role) => {
    const validator = new Validator();
    const result = await validator.validate(JSON.parse(openApiText(role)));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it.each(ROLES)('the %s document lists exactly the route table\'s paths and methods (HEAD with GET)', (role) => {
    const fromTable = new RouteTable(role).entries().flatMap(([, spec]) => spec.methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])).map((m) => `${m} ${spec.path}`)).sort();
    const fromDoc = Object.entries(docs[role].paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`)).sort();
    expect(fromDoc).toEqual(fromTable);
  });
});

describe('the documents against real servers', () => {
  let cluster: Cluster;
  let empty: Cluster;
  let worker: WorkerHandle;
  const extraWorkers: WorkerHandle[] = [];
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  for (const role of ROLES) ajv.addSchema(docs[role], `${role}.json`);

  beforeAll(async () => {
    [cluster, empty, worker] = await Promise.all([
      // Timeouts a loaded machine does not reach with an fsync, yet short enough for the 504 case (a SIGSTOPped worker).
      startCluster({ workers: 1, config: { forward_timeout: 2, forward_deadline: 3, max_body_bytes: 4096 } }),
      startCluster({ workers: 0 }),
      startWorker({ config: { max_body_bytes: 4096 } }),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([worker?.stop(), ...extraWorkers.map((w) => w.stop())]);
    await stopAllClusters();
  }, 60_000);

  /** The document path of a concrete path, and the response the document gives for its status. */
  function responseOf(role: ServerRole, method: string, template: string, status: number): { content?: Record<string, unknown>; 'x-error-codes'?: string[] } | undefined {
    return docs[role].paths[template]?.[method.toLowerCase()]?.responses[String(status)];
  }

  /** Checks an answer against its documented response: status listed, body valid for its media type, error code listed. */
  function checkAnswer(role: ServerRole, method: string, template: string, answer: Answer, expected: number): void {
    const where = `${role} ${method} ${template}`;
    expect(answer.status, `${where}: ${answer.text.slice(0, 300)}`).toBe(expected);
    const response = responseOf(role, method, template, answer.status);
    expect(response, `${where} ${answer.status} is documented`).toBeDefined();
    if (method === 'HEAD') {
      expect(answer.text).toBe('');
      return;
    }
    const type = (answer.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const mediaType = Object.keys(response!.content ?? {}).find((documentedType) => documentedType.split(';')[0]!.trim() === type);
    expect(mediaType, `${where} ${answer.status}: content type ${type} is documented`).toBeDefined();
    if (type === 'application/json') {
      const pointer = ['paths', template, method.toLowerCase(), 'responses', String(answer.status), 'content', mediaType!, 'schema'].map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
      const validate = ajv.compile({ $ref: `${role}.json#/${pointer}` });
      const body = JSON.parse(answer.text) as { error?: { code?: string } };
      expect(validate(body) ? [] : validate.errors, `${where} ${answer.status}: the body matches its schema`).toEqual([]);
      const codes = response!['x-error-codes'];
      if (codes !== undefined) expect(codes, `${where} ${answer.status}: error code documented`).toContain(body.error?.code);
    } else if (type === 'text/html') {
      expect(answer.text).toMatch(/^<!doctype html>/);
    } else {
      expect(answer.text).toMatch(/^# HELP /);
    }
  }

  /** Makes the worker's write-ahead log unreachable until `restore`: its folder replaced by a file, so it cannot be recreated. */
  function loseLog(walFolder: string): () => void {
    fs.rmSync(walFolder, { recursive: true, force: true });
    fs.writeFileSync(walFolder, 'not a folder');
    return () => fs.rmSync(walFolder, { force: true });
  }

  const batch = (tenant: string): string => JSON.stringify([{ id: 'a', tenant }, { id: 'b', tenant }]);
  const tooLarge = JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: `item-${i}-${'x'.repeat(20)}`, tenant: 't' })));

  it('answers every documented operation and status, each body as its schema says (and nothing undocumented)', async () => {
    const A = cluster.url;
    const B = empty.url;
    const W = worker.url;
    const secret = { [SECRET_HEADER]: worker.secret };
    const loop = { [FORWARDED_BY_HEADER]: 'another-coordinator' };
    const dirTenant = 'tenant-file-is-a-folder';
    fs.mkdirSync(tenantFilePath(worker.config.database, dirTenant), { recursive: true });
    const answered = new Set<string>();

    /** Runs one scenario for each of `methods` (a GET one for HEAD too) and checks it. */
    async function expectAnswer(role: ServerRole, methods: string[], template: string, status: number, run: (method: string) => Promise<Answer>): Promise<void> {
      for (const method of methods) {
        checkAnswer(role, method, template, await run(method), status);
        answered.add(`${role} ${method} ${template} ${status}`);
      }
    }
    const GET = ['GET', 'HEAD'];

    // --- the coordinator
    await expectAnswer('coordinator', GET, '/', 200, (m) => call(A, m, '/'));
    await expectAnswer('coordinator', ['POST'], '/items', 200, (m) => call(A, m, '/items', { body: batch('t') }));
    await expectAnswer('coordinator', ['POST'], '/items', 400, (m) => call(A, m, '/items', { body: '[' }));
    await expectAnswer('coordinator', ['POST'], '/items', 413, (m) => call(A, m, '/items', { body: tooLarge }));
    await expectAnswer('coordinator', ['POST'], '/items', 503, (m) => call(B, m, '/items', { body: batch('t') }));
    await expectAnswer('coordinator', ['POST'], '/items', 508, (m) => call(A, m, '/items', { body: batch('t'), headers: loop }));
    await expectAnswer('coordinator', ['POST'], '/items', 504, async (m) => {
      const [pid] = await cluster.workerPids();
      signal(pid!, 'SIGSTOP');
      try {
        return await call(A, m, '/items', { body: batch('paused') });
      } finally {
        signal(pid!, 'SIGCONT');
      }
    });
    await waitFor(async () => (await call(A, 'GET', '/readyz')).status === 200, 15_000, 'the coordinator ready again after SIGCONT');
    for (const template of ['/items/count', '/items/{tenant}/count']) {
      const at = (tenant: string): string => (template === '/items/count' ? `/items/count?tenant=${tenant}` : `/items/${tenant}/count`);
      await expectAnswer('coordinator', GET, template, 200, (m) => call(A, m, at('t')));
      await expectAnswer('coordinator', GET, template, 400, (m) => call(A, m, template === '/items/count' ? '/items/count' : '/items/%ZZ/count'));
      await expectAnswer('coordinator', GET, template, 503, (m) => call(B, m, at('t')));
      await expectAnswer('coordinator', GET, template, 508, (m) => call(A, m, at('t'), { headers: loop }));
    }
    await expectAnswer('coordinator', GET, '/counts', 200, (m) => call(A, m, '/counts?tenant=t&tenant=u'));
    await expectAnswer('coordinator', GET, '/counts', 400, (m) => call(A, m, '/counts'));
    await expectAnswer('coordinator', GET, '/counts', 503, (m) => call(B, m, '/counts?tenant=t'));
    await expectAnswer('coordinator', GET, '/counts', 508, (m) => call(A, m, '/counts?tenant=t', { headers: loop }));
    for (const template of ['/healthz', '/health', '/status', '/metrics', '/openapi.json', '/dashboard']) {
      await expectAnswer('coordinator', GET, template, 200, (m) => call(A, m, template));
    }
    await expectAnswer('coordinator', GET, '/readyz', 200, (m) => call(A, m, '/readyz'));
    await expectAnswer('coordinator', GET, '/readyz', 503, (m) => call(B, m, '/readyz'));

    // --- a worker, reached directly
    await expectAnswer('worker', GET, '/', 200, (m) => call(W, m, '/'));
    await expectAnswer('worker', ['POST'], '/items', 200, (m) => call(W, m, '/items', { body: batch(dirTenant) }));
    await expectAnswer('worker', ['POST'], '/items', 400, (m) => call(W, m, '/items', { body: '[' }));
    await expectAnswer('worker', ['POST'], '/items', 413, (m) => call(W, m, '/items', { body: tooLarge }));
    for (const template of ['/items/count', '/items/{tenant}/count']) {
      const at = (tenant: string): string => (template === '/items/count' ? `/items/count?tenant=${tenant}` : `/items/${tenant}/count`);
      await expectAnswer('worker', GET, template, 200, (m) => call(W, m, at('t')));
      await expectAnswer('worker', GET, template, 400, (m) => call(W, m, template === '/items/count' ? '/items/count' : '/items/%ZZ/count'));
      await expectAnswer('worker', GET, template, 503, (m) => call(W, m, at(dirTenant)));
    }
    await expectAnswer('worker', GET, '/counts', 200, (m) => call(W, m, '/counts?tenant=t&tenant=u'));
    await expectAnswer('worker', GET, '/counts', 400, (m) => call(W, m, '/counts?tenant=t&consistency=strong'));
    await expectAnswer('worker', GET, '/counts', 503, (m) => call(W, m, `/counts?tenant=${dirTenant}`));
    for (const [template, body] of [['/internal/merge', '{"t":["x"]}'], ['/internal/flush', '{"tenants":["t"]}'], ['/internal/members', '{"members":[]}']] as const) {
      await expectAnswer('worker', ['POST'], template, 200, (m) => call(W, m, template, { body, headers: secret }));
      await expectAnswer('worker', ['POST'], template, 400, (m) => call(W, m, template, { body: '{', headers: secret }));
      await expectAnswer('worker', ['POST'], template, 401, (m) => call(W, m, template, { body }));
      await expectAnswer('worker', ['POST'], template, 403, (m) => call(W, m, template, { body, headers: { [SECRET_HEADER]: 'wrong' } }));
    }
    const parts = [batch('t'), '['];
    const partsHeaders = { ...secret, [PARTS_HEADER]: parts.map((part) => part.length).join(',') };
    await expectAnswer('worker', ['POST'], '/internal/batches', 200, (m) => call(W, m, '/internal/batches', { body: parts.join(''), headers: partsHeaders }));
    await expectAnswer('worker', ['POST'], '/internal/batches', 400, (m) => call(W, m, '/internal/batches', { body: parts.join(''), headers: { ...secret, [PARTS_HEADER]: '1' } }));
    await expectAnswer('worker', ['POST'], '/internal/batches', 401, (m) => call(W, m, '/internal/batches', { body: parts.join(''), headers: { [PARTS_HEADER]: partsHeaders[PARTS_HEADER] } }));
    await expectAnswer('worker', ['POST'], '/internal/batches', 403, (m) => call(W, m, '/internal/batches', { body: parts.join(''), headers: { ...partsHeaders, [SECRET_HEADER]: 'wrong' } }));
    await expectAnswer('worker', ['POST'], '/internal/batches', 413, (m) => call(W, m, '/internal/batches', { body: tooLarge, headers: { ...secret, [PARTS_HEADER]: String(tooLarge.length) } }));
    // The folder-tenant's ids are pending (posted above); its file cannot be written.
    await expectAnswer('worker', ['POST'], '/internal/flush', 503, (m) => call(W, m, '/internal/flush', { body: JSON.stringify({ tenants: [dirTenant] }), headers: secret }));
    await expectAnswer('worker', ['GET', 'HEAD', 'POST'], '/kill', 401, (m) => call(W, m, '/kill'));
    await expectAnswer('worker', ['GET', 'HEAD', 'POST'], '/kill', 403, (m) => call(W, m, '/kill', { headers: { [SECRET_HEADER]: 'wrong' } }));
    for (const template of ['/healthz', '/health', '/readyz', '/metrics', '/openapi.json']) {
      await expectAnswer('worker', GET, template, 200, (m) => call(W, m, template));
    }
    // A write-ahead log that cannot be written: batches and hand-overs refused, not ready.
    const restore = loseLog(worker.walFolder);
    try {
      await expectAnswer('worker', ['POST'], '/items', 503, (m) => call(W, m, '/items', { body: batch('t') }));
      await expectAnswer('worker', ['POST'], '/internal/merge', 503, (m) => call(W, m, '/internal/merge', { body: '{"t":["y"]}', headers: secret }));
      await expectAnswer('worker', GET, '/readyz', 503, (m) => call(W, m, '/readyz'));
    } finally {
      restore();
    }
    await waitFor(async () => (await call(W, 'GET', '/readyz')).status === 200, 10_000, 'the worker ready again once its log folder can be made');
    // /kill stops a worker (HEAD too, as GET does): each method gets one of its own.
    for (const method of ['GET', 'HEAD', 'POST']) {
      const doomed = await startWorker();
      extraWorkers.push(doomed);
      await expectAnswer('worker', [method], '/kill', 200, (m) => call(doomed.url, m, '/kill', { headers: { [SECRET_HEADER]: doomed.secret } }));
      expect(await doomed.exited).toMatchObject({ code: 0 });
    }

    const expected = ROLES.flatMap((role) => documented(role).map((key) => `${role} ${key}`));
    expect([...answered].sort()).toEqual(expected.sort());
  }, 120_000);

  it('answers nothing undocumented: other methods get 405 with the documented Allow, other paths 404, and case or a trailing slash change nothing', async () => {
    for (const [role, base] of [['coordinator', cluster.url], ['worker', worker.url]] as const) {
      for (const [template, item] of Object.entries(docs[role].paths)) {
        const concrete = template.replace('{tenant}', 't');
        const allowed = Object.keys(item).map((m) => m.toUpperCase());
        for (const method of HTTP_METHODS.filter((m) => !allowed.includes(m))) {
          const answer = await call(base, method, concrete);
          expect(answer.status, `${role} ${method} ${concrete}`).toBe(405);
          expect(answer.headers.get('allow')?.split(', ').sort()).toEqual([...allowed].sort());
          if (method !== 'HEAD') expect(JSON.parse(answer.text).error.code).toBe('method_not_allowed');
        }
      }
      for (const unknown of ['/nope', '/items/t/count/extra', '/metrics.txt', '/dashboard/x']) {
        const answer = await call(base, 'GET', unknown);
        expect(answer.status, `${role} GET ${unknown}`).toBe(404);
        expect(JSON.parse(answer.text).error.code).toBe('not_found');
      }
      for (const variant of ['/HEALTHZ', '/healthz/', '/OpenAPI.json/']) {
        expect((await call(base, 'GET', variant)).status, `${role} GET ${variant}`).toBe(200);
      }
    }
  });
});
