import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, endSentence, errorBody, type ErrorCode } from '../../shared/errors.js';
import { codeSpan, readmeTable } from '../helpers/readme.js';
import { productSources, readSource } from '../helpers/sources.js';

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/** Every code the product raises (`AppError('<code>'`), with the files that raise it. */
function raisedCodes(): Map<string, string[]> {
  const raised = new Map<string, string[]>();
  for (const file of productSources()) {
    if (file === 'shared/errors.ts') continue;
    for (const match of readSource(file).matchAll(/AppError\(\s*'([^']*)'/g)) {
      raised.set(match[1]!, [...(raised.get(match[1]!) ?? []), file]);
    }
  }
  return raised;
}

/** The README's error table: code → the status it documents. */
const documented = new Map(readmeTable(['status', 'code', 'when']).map(([status, code]) => [codeSpan(code!), Number(status)]));

describe('ERROR_CODES', () => {
  it('holds exactly the codes the product raises: none unused, none raised without being registered', () => {
    const raised = raisedCodes();
    expect(CODES.filter((code) => !raised.has(code)), 'registered but never raised (AppError(\'<code>\') in coordinator/, worker/, shared/)').toEqual([]);
    expect([...raised.keys()].filter((code) => !(code in ERROR_CODES)), 'raised but not registered').toEqual([]);
  });

  it.each(CODES)('%s has a 4xx/5xx status and a message', (code) => {
    const { status, message } = ERROR_CODES[code];
    expect(Number.isInteger(status)).toBe(true);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(600);
    expect(message.trim().length).toBeGreaterThan(0);
  });

  it('uses snake_case codes', () => {
    for (const code of CODES) expect(code).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
  });

  it('maps the statuses the contract fixes', () => {
    expect(ERROR_CODES.body_too_large.status).toBe(413);
    expect(ERROR_CODES.not_found.status).toBe(404);
    expect(ERROR_CODES.method_not_allowed.status).toBe(405);
    expect(ERROR_CODES.no_worker_available.status).toBe(503);
    for (const code of ['invalid_json', 'invalid_utf8', 'invalid_batch', 'invalid_item', 'too_many_items', 'invalid_tenant'] as const) {
      expect(ERROR_CODES[code].status).toBe(400);
    }
  });
});

describe('AppError', () => {
  it('takes its status and default message from the registry', () => {
    const err = new AppError('no_worker_available');
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(AppError);
    expect(err.name).toBe('AppError');
    expect(err.code).toBe('no_worker_available');
    expect(err.status).toBe(503);
    expect(err.message).toBe(ERROR_CODES.no_worker_available.message);
    expect(err.index).toBeUndefined();
    expect(err.cause).toBeUndefined();
    expect(err.stack).toContain('AppError');
  });

  it('carries a custom message, the index and the cause', () => {
    const cause = new SyntaxError('Unexpected token');
    const err = new AppError('invalid_item', 'Item 3: `id` is missing.', { index: 3, cause });
    expect(err.code).toBe('invalid_item');
    expect(err.status).toBe(400);
    expect(err.message).toBe('Item 3: `id` is missing.');
    expect(err.index).toBe(3);
    expect(err.cause).toBe(cause);
  });

  it('keeps index 0', () => {
    expect(new AppError('invalid_item', undefined, { index: 0 }).index).toBe(0);
  });

  it.each(CODES)('%s builds the answer the README documents: its status, the registered message, the JSON body', (code) => {
    const err = new AppError(code);
    expect(documented.has(code), `${code} is missing from the README's error table`).toBe(true);
    expect(err.status).toBe(documented.get(code));
    expect(err.message).toBe(ERROR_CODES[code].message);
    expect(JSON.parse(JSON.stringify(errorBody(err, 'log-id')))).toStrictEqual({ error: { code, message: ERROR_CODES[code].message, id: 'log-id' } });
  });
});

describe('errorBody', () => {
  it('has the shape {error: {code, message, id}} without an index when there is none', () => {
    const body = errorBody(new AppError('not_found'), 'abc123');
    expect(body).toStrictEqual({ error: { code: 'not_found', message: ERROR_CODES.not_found.message, id: 'abc123' } });
    expect('index' in body.error).toBe(false);
    // Undefined keys must not leak into the JSON either.
    expect(JSON.parse(JSON.stringify(body))).toStrictEqual(body);
  });

  it('adds the index of the first bad item', () => {
    const body = errorBody(new AppError('invalid_item', 'Item 2: bad.', { index: 2 }), 'id-1');
    expect(body).toStrictEqual({ error: { code: 'invalid_item', message: 'Item 2: bad.', id: 'id-1', index: 2 } });
  });

  it('keeps index 0', () => {
    expect(errorBody(new AppError('invalid_item', undefined, { index: 0 }), 'x').error.index).toBe(0);
  });

  it('never exposes the cause or a stack', () => {
    const cause = new Error('secret detail /home/user/db');
    const text = JSON.stringify(errorBody(new AppError('internal', undefined, { cause }), 'x'));
    expect(text).not.toContain('secret detail');
    expect(text).not.toContain('    at ');
    expect(Object.keys(JSON.parse(text).error).sort()).toEqual(['code', 'id', 'message']);
  });
});

describe('endSentence', () => {
  it('ends a message with one period, never two, whatever the text it ends with brought', () => {
    expect(endSentence('worker-5001 could not: HTTP 503 storage_unavailable: their ids are safe in its write-ahead log')).toMatch(/log\.$/);
    expect(endSentence('worker-5001 could not: HTTP 503 storage_unavailable: their ids are safe in its write-ahead log.')).toBe('worker-5001 could not: HTTP 503 storage_unavailable: their ids are safe in its write-ahead log.');
    expect(endSentence('Is it?')).toBe('Is it?');
    expect(endSentence('see (the log)')).toBe('see (the log).');
  });

  it('no registered message has a doubled period', () => {
    for (const code of CODES) expect(ERROR_CODES[code].message, code).not.toMatch(/\.\./);
  });
});
