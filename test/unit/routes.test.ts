import { describe, expect, it } from 'vitest';
import { ROUTES, RouteTable } from '../../shared/routes.js';

const coordinator = new RouteTable('coordinator');
const worker = new RouteTable('worker');

describe('RouteTable.match', () => {
  it.each([
    ['POST', '/items', 'ingest', undefined, ''],
    ['POST', '/items/', 'ingest', undefined, ''],
    ['GET', '/items/t1/count', 'countBySegment', 't1', ''],
    ['HEAD', '/items/t1/count', 'countBySegment', 't1', ''],
    ['GET', '/items/t1/count/', 'countBySegment', 't1', ''],
    ['GET', '/items/a%2Fb/count?consistency=strong', 'countBySegment', 'a%2Fb', 'consistency=strong'],
    ['GET', '/items/count/count', 'countBySegment', 'count', ''],
    ['GET', '/items/./count', 'countBySegment', '.', ''],
    ['GET', '/items/count?tenant=q?x', 'countByQuery', undefined, 'tenant=q?x'],
    ['HEAD', '/items/count/?tenant=?', 'countByQuery', undefined, 'tenant=?'],
    ['GET', '/items/count', 'countByQuery', undefined, ''],
    ['GET', '/ITEMS/Abc/COUNT', 'countBySegment', 'Abc', ''],
    ['GET', '/', 'health', undefined, ''],
    ['HEAD', '/?x=1', 'health', undefined, 'x=1'],
  ])('%s %s → %s (segment %s, query %j)', (method, url, name, segment, query) => {
    const match = coordinator.match(method, url);
    expect(match).toMatchObject({ kind: 'route', name, segment, query });
    // Both servers have every item route.
    expect(worker.match(method, url)).toEqual(match);
  });

  it.each([
    ['GET', 'http://evil/items/t1/count', 'countBySegment', 't1', ''],
    ['GET', 'http://127.0.0.1:5000/items/count?tenant=a%2Fb&consistency=strong', 'countByQuery', undefined, 'tenant=a%2Fb&consistency=strong'],
    ['POST', 'HTTPS://evil.example/items/', 'ingest', undefined, ''],
    ['GET', 'http://[::1]:5001/counts?tenant=t', 'counts', undefined, 'tenant=t'],
    ['GET', 'http://evil', 'health', undefined, ''],
    ['GET', 'http://evil?x=1', 'health', undefined, 'x=1'],
    ['GET', 'http://evil/metrics', 'metrics', undefined, ''],
  ])('a request target in absolute form (RFC 9112 3.2.2), %s %s, is routed by its path: %s', (method, url, name, segment, query) => {
    const match = coordinator.match(method, url);
    expect(match).toMatchObject({ kind: 'route', name, segment, query });
    expect(worker.match(method, url)).toEqual(match);
  });

  it.each([
    ['/nope'], ['/items/a/b/c'], ['/items/a/count/extra'], ['/items//count'], ['/items/t/count//'], ['/itemsx'], ['//items'], [''], ['*'], ['http://evil/nope'], ['items/t1/count'],
  ])('an unknown path (%s) matches nothing', (url) => {
    expect(coordinator.match('GET', url)).toBeUndefined();
    expect(coordinator.match('POST', url)).toBeUndefined();
  });

  it.each([
    ['GET', '/items', 'POST'],
    ['DELETE', '/items/', 'POST'],
    ['HEAD', '/items', 'POST'],
    ['POST', '/items/t/count', 'GET, HEAD'],
    ['PUT', '/items/count?tenant=t', 'GET, HEAD'],
    ['POST', '/', 'GET, HEAD'],
    [undefined, '/items', 'POST'],
  ])('%s %s → 405 with Allow: %s', (method, url, allow) => {
    expect(coordinator.match(method, url)).toMatchObject({ kind: 'method-not-allowed', allow });
  });

  it('the worker-only /kill is a route on workers (GET, HEAD, POST) and unknown on the coordinator', () => {
    expect(coordinator.match('POST', '/kill')).toBeUndefined();
    expect(worker.match('POST', '/kill')).toMatchObject({ kind: 'route', name: 'kill' });
    expect(worker.match('HEAD', '/kill/')).toMatchObject({ kind: 'route', name: 'kill' });
    expect(worker.match('PUT', '/kill')).toMatchObject({ kind: 'method-not-allowed', allow: 'GET, HEAD, POST' });
  });

  it('lists, per server, exactly the routes of the table that name it', () => {
    expect(coordinator.entries().map(([name]) => name).sort()).toEqual(Object.entries(ROUTES).filter(([, spec]) => (spec.servers as readonly string[]).includes('coordinator')).map(([name]) => name).sort());
    expect(worker.entries().map(([name]) => name).sort()).toEqual(Object.entries(ROUTES).filter(([, spec]) => (spec.servers as readonly string[]).includes('worker')).map(([name]) => name).sort());
    // The cluster-wide views live on the coordinator only.
    expect(worker.entries().map(([name]) => name)).not.toContain('status');
  });

  it('only the operations pages go through express: what a cluster calls on itself (health, hand-overs, flushes, members, kill) does not load it', () => {
    expect(Object.entries(ROUTES).filter(([, spec]) => spec.lane === 'express').map(([name]) => name).sort()).toEqual(['dashboard', 'metrics', 'openapi', 'status']);
  });

  it('GET /counts is a route on both servers, its query kept whole', () => {
    for (const table of [coordinator, worker]) {
      expect(table.match('GET', '/counts?tenant=a&tenant=b')).toMatchObject({ kind: 'route', name: 'counts', query: 'tenant=a&tenant=b' });
      expect(table.match('HEAD', '/Counts/?tenant=a')).toMatchObject({ kind: 'route', name: 'counts' });
      expect(table.match('POST', '/counts')).toMatchObject({ kind: 'method-not-allowed', allow: 'GET, HEAD' });
    }
  });
});
