import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, stopAllClusters, waitFor } from '../helpers/cluster.js';

afterEach(stopAllClusters);

describe('GET /counts?tenant=a&tenant=b', () => {
  it('answers every named tenant at once, on the coordinator and on a worker, with either consistency', async () => {
    const cluster = await startCluster({ workers: 2, config: { max_count_tenants: 9 } });
    const items = [
      { id: '1', tenant: 'a' }, { id: '2', tenant: 'a' }, { id: '1', tenant: 'b' },
      { id: '1', tenant: '__proto__' }, { id: '1', tenant: '..' }, { id: '1', tenant: 'x/y' },
      { id: '1', tenant: 'é' }, { id: '1', tenant: 'q?x=1' },
    ];
    expect((await cluster.post(items)).status).toBe(200);
    const query = 'tenant=a&tenant=b&tenant=__proto__&tenant=..&tenant=x/y&tenant=%C3%A9&tenant=q%3Fx%3D1&tenant=nobody&tenant=a';
    // A computed key: a literal `__proto__:` would set the prototype instead.
    const expected = { a: 2, b: 1, ['__proto__']: 1, '..': 1, 'x/y': 1, 'é': 1, 'q?x=1': 1, nobody: 0 };
    const strong = await cluster.request(`/counts?${query}&consistency=strong`);
    expect(strong.status).toBe(200);
    expect(strong.headers.get('content-type')).toMatch(/^application\/json/);
    expect(strong.body).toEqual({ counts: expected });
    expect(Object.keys(strong.body.counts).sort()).toEqual(['..', '__proto__', 'a', 'b', 'nobody', 'q?x=1', 'x/y', 'é'].sort());
    // The same from the coordinator without consistency, and from each worker directly, once persisted (strong made it so).
    for (const target of [cluster.url, ...cluster.workerUrls]) {
      const answer = await cluster.request(`/counts?${query}`, {}, target);
      expect(answer.status, target).toBe(200);
      expect(answer.body, target).toEqual(strong.body);
    }
    // HEAD: same status and headers, no body; a trailing slash is the same route.
    const head = await fetch(`${cluster.url}/counts/?tenant=a`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await cluster.request('/counts?tenant=a', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('refuses too many tenants, none, bad ones and unknown consistencies with the same errors on both servers', async () => {
    const cluster = await startCluster({ workers: 1, config: { max_count_tenants: 3 } });
    const worker = cluster.workerUrls[0]!;
    const cases: Array<[string, number, string, RegExp?]> = [
      ['/counts?tenant=a&tenant=b&tenant=c&tenant=d', 400, 'too_many_tenants', /4 tenants.*limit is 3/],
      ['/counts', 400, 'invalid_tenant'],
      ['/counts?other=1', 400, 'invalid_tenant'],
      ['/counts?tenant=a&tenant=', 400, 'invalid_tenant', /parameter number 2.*empty/],
      ['/counts?tenant=a&tenant=%0A', 400, 'invalid_tenant', /control characters/],
      [`/counts?tenant=${'x'.repeat(300)}`, 400, 'invalid_tenant', /limit is 256/],
      ['/counts?tenant=a&tenant=%ZZ', 400, 'bad_request'],
      ['/counts?tenant=a&consistency=sometimes', 400, 'invalid_consistency'],
    ];
    for (const target of [cluster.url, worker]) {
      for (const [pathname, status, code, message] of cases) {
        const answer = await cluster.request(pathname, {}, target);
        expect(answer.status, `${target}${pathname}`).toBe(status);
        expect(answer.body.error.code, `${target}${pathname}`).toBe(code);
        if (message !== undefined) expect(answer.body.error.message).toMatch(message);
      }
    }
    // A tenant named twice counts once toward nothing but the limit of parameters, and is answered once.
    expect((await cluster.request('/counts?tenant=a&tenant=a&tenant=b')).body).toEqual({ counts: { a: 0, b: 0 } });
    // A worker alone cannot make a strong read.
    expect((await cluster.request('/counts?tenant=a&consistency=strong', {}, worker)).body.error.code).toBe('invalid_consistency');
    // The limit is a config key like the others: raised without a restart.
    cluster.writeConfig({ max_count_tenants: 4 });
    await waitFor(async () => (await cluster.request('/counts?tenant=a&tenant=b&tenant=c&tenant=d')).status === 200, 10_000, 'the new limit in force');
  });
});

describe('ids and tenants are compared byte for byte after JSON decoding', () => {
  it('composed and decomposed forms of the same text are different ids and different tenants', async () => {
    const cluster = await startCluster({ workers: 2 });
    const composed = '\u00e9t\u00e9'; // "été", precomposed é
    const decomposed = 'e\u0301te\u0301'; // "été", e + combining acute
    const items = [
      { id: composed, tenant: 'unicode' }, { id: decomposed, tenant: 'unicode' }, { id: '\u00e9t\u00e9', tenant: 'unicode' },
      { id: 'x', tenant: composed }, { id: 'y', tenant: decomposed },
    ];
    expect((await cluster.post(items)).status).toBe(200);
    const answer = await cluster.request(`/counts?tenant=unicode&tenant=${encodeURIComponent(composed)}&tenant=${encodeURIComponent(decomposed)}&consistency=strong`);
    expect(answer.body).toEqual({ counts: { unicode: 2, [composed]: 1, [decomposed]: 1 } });
    // "\u00e9" written as a JSON escape is the same id as the raw character: decoding comes first.
    expect((await cluster.post(`[{"id":"\\u00e9t\\u00e9","tenant":"unicode"}]`)).status).toBe(200);
    expect((await cluster.request('/items/unicode/count?consistency=strong')).body).toEqual({ count: 2 });
  });
});
