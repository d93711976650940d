import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, type ErrorCode } from '../../shared/errors.js';
import { checkTenant, parseBatch, parseJsonBody, validateBatch, type Limits } from '../../shared/items.js';

const LIMITS: Limits = { max_batch_items: 10, max_id_length: 8, max_tenant_length: 6 };

/** The AppError `fn` throws; fails the test when it throws nothing or something else. */
function appError(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError, nothing was thrown');
}

function expectCode(err: AppError, code: ErrorCode, index?: number): void {
  expect(err.code).toBe(code);
  expect(err.status).toBe(ERROR_CODES[code].status);
  expect(err.status).toBe(400);
  expect(err.index).toBe(index);
  expect(err.message.length).toBeGreaterThan(0);
}

const body = (text: string): Buffer => Buffer.from(text, 'utf8');
const batch = (value: unknown): Buffer => body(JSON.stringify(value));

describe('parseBatch: good batches', () => {
  it('returns the items of a valid batch', () => {
    const items = [{ id: 'item1', tenant: 't1' }, { id: 'item2', tenant: 't1' }, { id: 'item1', tenant: 't2' }];
    expect(parseBatch(batch(items), LIMITS)).toEqual(items);
  });

  it('accepts an empty array', () => {
    expect(parseBatch(body('[]'), LIMITS)).toEqual([]);
    expect(parseBatch(body(' \n[ ]\n'), LIMITS)).toEqual([]);
  });

  it('ignores extra keys', () => {
    const items = parseBatch(batch([{ id: 'a', tenant: 't', extra: 1, nested: { deep: [1] }, count: null }]), LIMITS);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ id: 'a', tenant: 't' });
  });

  it('accepts a key named __proto__ without touching prototypes', () => {
    const items = parseBatch(body('[{"__proto__": {"polluted": true}, "id": "a", "tenant": "t"}]'), LIMITS);
    expect(items[0]).toMatchObject({ id: 'a', tenant: 't' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each([
    ['Japanese', '日本', 'テナント'],
    ['emoji', '🙂🎉', '👍'],
    ['accents', 'café', 'naïve'],
    ['escaped non-ASCII', '\u00e9', '\u{1F600}'],
    ['spaces and punctuation', 'a b/c', '../x'],
    ['dots', '.', '..'],
    ['the first characters past C1 (U+00A0 no-break space, U+00A1)', 'a\u00a0b', '\u00a1'],
  ])('accepts non-ASCII and odd but printable strings: %s', (_what, id, tenant) => {
    expect(parseBatch(batch([{ id, tenant }]), LIMITS)).toEqual([{ id, tenant }]);
  });

  it('accepts a surrogate pair written as JSON escapes', () => {
    expect(parseBatch(body('[{"id": "\\ud83d\\ude00", "tenant": "t"}]'), LIMITS)).toEqual([{ id: '😀', tenant: 't' }]);
  });

  it('accepts values exactly at the length limits and a batch exactly at the item limit', () => {
    const items = Array.from({ length: LIMITS.max_batch_items }, (_, i) => ({ id: `${i}`.padEnd(LIMITS.max_id_length, 'x'), tenant: 't'.repeat(LIMITS.max_tenant_length) }));
    expect(parseBatch(batch(items), LIMITS)).toHaveLength(LIMITS.max_batch_items);
  });
});

describe('parseJsonBody', () => {
  it.each([
    ['garbage', 'not json'],
    ['a truncated array', '[{"id": "a", "tenant": "t"}'],
    ['a trailing comma', '[{"id": "a", "tenant": "t"},]'],
    ['single quotes', "[{'id': 'a', 'tenant': 't'}]"],
    ['an empty body', ''],
    ['only whitespace', '   \n'],
    ['two documents', '[] []'],
    ['a byte order mark', '\ufeff[]'],
  ])('rejects %s as invalid_json', (_what, text) => {
    const err = appError(() => parseJsonBody(body(text)));
    expectCode(err, 'invalid_json');
    expect(err.message).toMatch(/^The request body is not valid JSON/);
  });

  it('keeps the SyntaxError as the cause', () => {
    const err = appError(() => parseJsonBody(body('{')));
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });

  it.each([
    ['0xff 0xfe', [0xff, 0xfe]],
    ['a lone continuation byte inside a string', [0x5b, 0x22, 0x80, 0x22, 0x5d]],
    ['a truncated 3-byte sequence', [0x5b, 0x22, 0xe6, 0x97, 0x22, 0x5d]],
    ['an overlong encoding of "/"', [0x5b, 0x22, 0xc0, 0xaf, 0x22, 0x5d]],
    ['an encoded surrogate (CESU-8)', [0x5b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x5d]],
  ])('rejects invalid UTF-8 (%s) as invalid_utf8', (_what, bytes) => {
    expectCode(appError(() => parseJsonBody(Buffer.from(bytes))), 'invalid_utf8');
  });

  it('parses any JSON value', () => {
    expect(parseJsonBody(body('{"a": 1}'))).toEqual({ a: 1 });
    expect(parseJsonBody(body('null'))).toBeNull();
    expect(parseJsonBody(body('"日本"'))).toBe('日本');
  });
});

describe('parseBatch: bad batches', () => {
  it('reports invalid JSON and invalid UTF-8 as such', () => {
    expectCode(appError(() => parseBatch(body('[{'), LIMITS)), 'invalid_json');
    expectCode(appError(() => parseBatch(Buffer.from([0xff, 0xfe]), LIMITS)), 'invalid_utf8');
  });

  it.each([
    ['an object', '{"id": "a", "tenant": "t"}', 'an object'],
    ['a string', '"items"', 'a string'],
    ['a number', '42', 'a number'],
    ['null', 'null', 'null'],
    ['a boolean', 'true', 'a boolean'],
  ])('rejects a body that is %s, not an array', (_what, text, type) => {
    const err = appError(() => parseBatch(body(text), LIMITS));
    expectCode(err, 'invalid_batch');
    expect(err.message).toContain(`got ${type}`);
  });

  it.each([
    ['a string', 'item1'],
    ['a number', 7],
    ['null', null],
    ['a boolean', false],
    ['an array (extra nesting)', [{ id: 'a', tenant: 't' }]],
  ])('rejects an item that is %s', (_what, item) => {
    expectCode(appError(() => parseBatch(batch([{ id: 'ok', tenant: 't' }, item]), LIMITS)), 'invalid_item', 1);
  });

  it.each([
    ['id', { tenant: 't' }],
    ['tenant', { id: 'a' }],
  ])('rejects an item with no %s', (field, item) => {
    const err = appError(() => parseBatch(batch([item]), LIMITS));
    expectCode(err, 'invalid_item', 0);
    expect(err.message).toContain(`\`${field}\` is missing`);
  });

  it('rejects an empty object', () => {
    expectCode(appError(() => parseBatch(body('[{}]'), LIMITS)), 'invalid_item', 0);
  });

  it.each([
    ['a number', 1, 'a number'],
    ['an object', { v: 'a' }, 'an object'],
    ['an array', ['a'], 'an array'],
    ['a boolean', true, 'a boolean'],
    ['null', null, 'null'],
  ])('rejects a non-string id or tenant: %s', (_what, value, type) => {
    const badId = appError(() => parseBatch(batch([{ id: value, tenant: 't' }]), LIMITS));
    expectCode(badId, 'invalid_item', 0);
    expect(badId.message).toContain(`\`id\` must be a string, got ${type}`);
    const badTenant = appError(() => parseBatch(batch([{ id: 'a', tenant: value }]), LIMITS));
    expectCode(badTenant, 'invalid_item', 0);
    expect(badTenant.message).toContain(`\`tenant\` must be a string, got ${type}`);
  });

  it('rejects empty strings', () => {
    expect(appError(() => parseBatch(batch([{ id: '', tenant: 't' }]), LIMITS)).message).toContain('`id` must not be empty');
    expect(appError(() => parseBatch(batch([{ id: 'a', tenant: '' }]), LIMITS)).message).toContain('`tenant` must not be empty');
  });

  it('rejects values over the length limits', () => {
    const longId = appError(() => parseBatch(batch([{ id: 'x'.repeat(LIMITS.max_id_length + 1), tenant: 't' }]), LIMITS));
    expectCode(longId, 'invalid_item', 0);
    expect(longId.message).toContain(`limit is ${LIMITS.max_id_length}`);
    const longTenant = appError(() => parseBatch(batch([{ id: 'a', tenant: 't'.repeat(LIMITS.max_tenant_length + 1) }]), LIMITS));
    expectCode(longTenant, 'invalid_item', 0);
    expect(longTenant.message).toContain(`limit is ${LIMITS.max_tenant_length}`);
  });

  it('rejects a batch over the item limit as too_many_items', () => {
    const items = Array.from({ length: LIMITS.max_batch_items + 1 }, (_, i) => ({ id: `${i}`, tenant: 't' }));
    const err = appError(() => parseBatch(batch(items), LIMITS));
    expectCode(err, 'too_many_items');
    expect(err.message).toContain(`${LIMITS.max_batch_items + 1}`);
  });

  it.each([
    ['NUL', '\u0000'],
    ['newline', '\n'],
    ['carriage return', '\r'],
    ['tab', '\t'],
    ['escape', '\u001b'],
    ['unit separator', '\u001f'],
    ['DEL', '\u007f'],
    ['U+0080 (the first C1 control)', '\u0080'],
    ['NEL (U+0085, C1)', '\u0085'],
    ['U+009F (the last C1 control)', '\u009f'],
  ])('rejects the control character %s in an id or a tenant', (_what, char) => {
    const badId = appError(() => parseBatch(batch([{ id: `a${char}b`, tenant: 't' }]), LIMITS));
    expectCode(badId, 'invalid_item', 0);
    expect(badId.message).toContain('control characters');
    expectCode(appError(() => parseBatch(batch([{ id: 'a', tenant: `${char}` }]), LIMITS)), 'invalid_item', 0);
  });

  it.each([
    ['a lone high surrogate', '\\ud800'],
    ['a lone low surrogate', '\\udc00'],
    ['a reversed pair', '\\ude00\\ud83d'],
    ['a high surrogate at the end', 'abc\\ud83d'],
  ])('rejects %s written as a JSON escape', (_what, escaped) => {
    const badId = appError(() => parseBatch(body(`[{"id": "${escaped}", "tenant": "t"}]`), LIMITS));
    expectCode(badId, 'invalid_item', 0);
    expect(badId.message).toContain('lone surrogate');
    expectCode(appError(() => parseBatch(body(`[{"id": "a", "tenant": "${escaped}"}]`), LIMITS)), 'invalid_item', 0);
  });

  it('reports the index of the FIRST bad item', () => {
    const items: unknown[] = [
      { id: 'a', tenant: 't' },
      { id: 'b', tenant: 't' },
      { id: '', tenant: 't' },
      { id: 'd', tenant: 't' },
      { id: 5, tenant: 't' },
    ];
    const err = appError(() => parseBatch(batch(items), LIMITS));
    expectCode(err, 'invalid_item', 2);
    expect(err.message).toMatch(/^Item 2\b/);
  });

  it('reports index 0 (not a missing index) when the first item is bad', () => {
    const err = appError(() => parseBatch(batch([null, null]), LIMITS));
    expect(err.index).toBe(0);
  });

  it('names the id problem before the tenant problem of the same item', () => {
    const err = appError(() => parseBatch(batch([{ id: 1, tenant: 2 }]), LIMITS));
    expect(err.message).toContain('`id`');
  });
});

describe('validateBatch', () => {
  it('validates an already parsed value and returns it', () => {
    const items = [{ id: 'a', tenant: 't' }];
    expect(validateBatch(items, LIMITS)).toBe(items);
  });

  it('uses the same codes as parseBatch', () => {
    expectCode(appError(() => validateBatch({}, LIMITS)), 'invalid_batch');
    expectCode(appError(() => validateBatch(undefined, LIMITS)), 'invalid_batch');
    expectCode(appError(() => validateBatch([{ id: 'a', tenant: 't' }, 'x'], LIMITS)), 'invalid_item', 1);
  });

  it('checks the item count before the items', () => {
    const items = Array.from({ length: LIMITS.max_batch_items + 1 }, () => null);
    expectCode(appError(() => validateBatch(items, LIMITS)), 'too_many_items');
  });
});

describe('checkTenant', () => {
  it.each(['t1', '..', '.', '/', '日本語', '🙂', 'a b'])('returns the good tenant %j', (tenant) => {
    expect(checkTenant(tenant, 16)).toBe(tenant);
  });

  it.each([
    ['missing', undefined],
    ['null', null],
    ['a number', 5],
    ['an array', ['t']],
    ['empty', ''],
    ['too long', 'x'.repeat(17)],
    ['a control character', 'a\nb'],
    ['a C1 control character (NEL, U+0085)', 'a\u0085'],
    ['a C1 control character (U+0080)', '\u0080'],
    ['a C1 control character (U+009F)', 'x\u009fy'],
    ['a lone surrogate', '\ud800'],
  ])('rejects a tenant that is %s as invalid_tenant', (_what, tenant) => {
    const err = appError(() => checkTenant(tenant, 16));
    expectCode(err, 'invalid_tenant');
    expect(err.message).toMatch(/^The tenant is invalid: `tenant` /);
  });

  it('accepts a tenant exactly at the limit', () => {
    expect(checkTenant('x'.repeat(16), 16)).toBe('x'.repeat(16));
  });
});

describe('parseBatch: keys in any letter case (as Go decodes them)', () => {
  it.each([
    ['ID and Tenant', '[{"ID": "a", "Tenant": "t"}]', { id: 'a', tenant: 't' }],
    ['all caps', '[{"ID": "a", "TENANT": "t"}]', { id: 'a', tenant: 't' }],
    ['mixed', '[{"iD": "a", "tEnAnT": "t"}]', { id: 'a', tenant: 't' }],
    ['among folded keys the last one wins', '[{"ID": "no", "Id": "a", "tenant": "t"}]', { id: 'a', tenant: 't' }],
  ])('%s', (_label, text, expected) => {
    const items = parseBatch(body(text), LIMITS);
    expect(items).toEqual([expected]);
    // Replaced by a plain item: the extra keys are gone.
    expect(Object.keys(items[0]!).sort()).toEqual(['id', 'tenant']);
  });

  it('the exact key wins over a folded one', () => {
    expect(parseBatch(body('[{"ID": "no", "id": "a", "tenant": "t", "Tenant": "no"}]'), LIMITS)[0]).toMatchObject({ id: 'a', tenant: 't' });
    expect(parseBatch(body('[{"ID": "no", "id": "a", "TENANT": "t"}]'), LIMITS)).toEqual([{ id: 'a', tenant: 't' }]);
  });

  it('an exact key with a bad value is reported, not replaced by a folded one', () => {
    expectCode(appError(() => parseBatch(body('[{"id": null, "ID": "a", "tenant": "t"}]'), LIMITS)), 'invalid_item', 0);
  });

  it('a folded key is validated like the exact one', () => {
    expectCode(appError(() => parseBatch(body('[{"id": "a", "tenant": "t"}, {"ID": 7, "Tenant": "t"}]'), LIMITS)), 'invalid_item', 1);
    expectCode(appError(() => parseBatch(body('[{"Idx": "a", "tenant": "t"}]'), LIMITS)), 'invalid_item', 0);
  });

  it('an exact-case item is returned as it was parsed (the fast path allocates nothing)', () => {
    const parsed = JSON.parse('[{"id": "a", "tenant": "t", "extra": 1}]') as unknown[];
    const first = parsed[0];
    expect(validateBatch(parsed, LIMITS)[0]).toBe(first);
  });
});
