import { describe, expect, it } from 'vitest';
import { AppError } from '../../shared/errors.js';
import { consistencyOf } from '../../shared/consistency.js';
import { checkTenant } from '../../shared/items.js';
import { withoutParam } from '../../shared/query-params.js';
import { tenantFromQuery, tenantFromSegment, tenantOf, tenantsFromQuery } from '../../shared/tenant-param.js';

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

describe('tenantsFromQuery', () => {
  const check = (tenant: string): string => checkTenant(tenant, 10);

  it('reads every tenant parameter in order, decoded like the single one, each named once', () => {
    expect(tenantsFromQuery('tenant=a&tenant=q?x&other=1&tenant=a%26b&tenant=a+b&tenant=a', 10, check)).toEqual(['a', 'q?x', 'a&b', 'a b']);
    expect(tenantsFromQuery('tenant=__proto__&tenant=..', 10, check)).toEqual(['__proto__', '..']);
  });

  it('none is 400 invalid_tenant; more parameters than the limit (repeats included) is 400 too_many_tenants', () => {
    expect(codeOf(() => tenantsFromQuery('', 10, check))).toBe('invalid_tenant');
    expect(codeOf(() => tenantsFromQuery('x=1', 10, check))).toBe('invalid_tenant');
    expect(codeOf(() => tenantsFromQuery('tenant=a&tenant=b&tenant=a', 2, check))).toBe('too_many_tenants');
    expect(tenantsFromQuery('tenant=a&tenant=b', 2, check)).toEqual(['a', 'b']);
  });

  it('a bad tenant is refused with its own code, naming which parameter it was', () => {
    const err = (() => {
      try {
        tenantsFromQuery('tenant=a&tenant=', 10, check);
      } catch (e) {
        return e as AppError;
      }
      throw new Error('nothing thrown');
    })();
    expect(err.code).toBe('invalid_tenant');
    expect(err.message).toMatch(/parameter number 2/);
    expect(codeOf(() => tenantsFromQuery('tenant=a&tenant=12345678901', 10, check))).toBe('invalid_tenant');
    expect(codeOf(() => tenantsFromQuery('tenant=%0A', 10, check))).toBe('invalid_tenant');
    expect(codeOf(() => tenantsFromQuery('tenant=a&tenant=%ZZ', 10, check))).toBe('bad_request');
  });
});

describe('consistencyOf', () => {
  it.each([
    ['', 'eventual'],
    ['tenant=t', 'eventual'],
    ['tenant=%41', 'eventual'],
    ['consistency=eventual', 'eventual'],
    ['tenant=t&consistency=strong', 'strong'],
    ['consistency=STRONG&tenant=t', 'strong'],
    ['%63onsistency=strong', 'strong'],
    ['inconsistency=strong', 'eventual'],
  ])('%j → %s', (query, expected) => {
    expect(consistencyOf(query)).toBe(expected);
  });

  it.each([['consistency=linearizable'], ['consistency='], ['consistency'], ['consistency=strong&consistency=strong']])('%j is 400 invalid_consistency', (query) => {
    expect(codeOf(() => consistencyOf(query))).toBe('invalid_consistency');
  });

  it('a malformed value is 400 bad_request', () => {
    expect(codeOf(() => consistencyOf('consistency=%ZZ'))).toBe('bad_request');
  });
});

describe('withoutParam', () => {
  it('drops every pair of that key, keeps the others exactly as they came', () => {
    expect(withoutParam('tenant=a%2Fb&consistency=strong&tenant=q?x&%63onsistency=x&z', 'consistency')).toBe('tenant=a%2Fb&tenant=q?x&z');
    expect(withoutParam('', 'consistency')).toBe('');
  });
});
