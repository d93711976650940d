import { describe, expect, it } from 'vitest';
import { AppError } from '../../shared/errors.js';
import { tenantFromQuery, tenantFromSegment, tenantOf } from '../../shared/tenant-param.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return (err as AppError).code;
  }
  throw new Error('nothing thrown');
}

describe('tenantFromSegment', () => {
  it.each([
    ['t1', 't1'],
    ['a%2Fb', 'a/b'],
    ['%2E%2E', '..'],
    ['..', '..'],
    ['a+b', 'a+b'], // + is a plus in a path
    ['%3F%26%3D%23%25', '?&=#%'],
    ['%C3%A9%E2%9C%93%F0%9D%84%9E', 'é✓𝄞'],
    ['q%3Fx', 'q?x'],
  ])('%s → %j', (raw, tenant) => {
    expect(tenantFromSegment(raw)).toBe(tenant);
  });

  it.each([['%'], ['%ZZ'], ['%C3'], ['%E0%A4%A'], ['a%2']])('a malformed escape (%s) is 400 bad_request', (raw) => {
    expect(codeOf(() => tenantFromSegment(raw))).toBe('bad_request');
  });
});

describe('tenantFromQuery', () => {
  it.each([
    ['tenant=t1', 't1'],
    ['tenant=q?x', 'q?x'],
    ['tenant=?', '?'],
    ['tenant==', '='],
    ['tenant=a=b', 'a=b'],
    ['tenant=a%26b', 'a&b'],
    ['tenant=a+b', 'a b'],
    ['tenant=a%2Bb', 'a+b'],
    ['tenant=%23', '#'],
    ['tenant=100%25', '100%'],
    ['tenant=a/b', 'a/b'],
    ['tenant=..', '..'],
    ['other=1&tenant=x&y=z', 'x'],
    ['%74enant=x', 'x'],
    ['bad=%ZZ&tenant=x', 'x'],
    ['tenant=', ''],
    ['tenant', ''],
    ['tenant=%C3%A9', 'é'],
  ])('%s → %j', (query, tenant) => {
    expect(tenantFromQuery(query)).toBe(tenant);
  });

  it('a missing tenant, or one given twice, is 400 invalid_tenant', () => {
    expect(codeOf(() => tenantFromQuery(''))).toBe('invalid_tenant');
    expect(codeOf(() => tenantFromQuery('other=x'))).toBe('invalid_tenant');
    expect(codeOf(() => tenantFromQuery('tenant=a&tenant=b'))).toBe('invalid_tenant');
  });

  it.each([['tenant=%'], ['tenant=%ZZ'], ['tenant=%C3']])('a malformed tenant value (%s) is 400 bad_request', (query) => {
    expect(codeOf(() => tenantFromQuery(query))).toBe('bad_request');
  });
});

describe('tenantOf', () => {
  it('reads the segment when the route has one, else the query', () => {
    expect(tenantOf({ segment: 'a%2Fb', query: 'tenant=zzz' })).toBe('a/b');
    expect(tenantOf({ segment: undefined, query: 'tenant=q?x' })).toBe('q?x');
  });
});
