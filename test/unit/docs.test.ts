import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS } from '../../shared/config.js';
import { ERROR_CODES } from '../../shared/errors.js';
import { codeSpan, readmeTable } from '../helpers/readme.js';

/** The README's error table (status, code) and config table (key), as the user reads them. */
const errorRows = readmeTable(['status', 'code', 'when']).map(([status, code]) => ({ status: Number(status), code: codeSpan(code!) }));
const configKeys = readmeTable(['key', 'default', 'meaning']).map(([key]) => codeSpan(key!));

describe('the README and the code agree', () => {
  it.each(Object.entries(ERROR_CODES))('error code %s is in the README\'s error table with its status', (code, { status }) => {
    expect(errorRows.filter((row) => row.code === code), `rows for ${code}`).toEqual([{ status, code }]);
  });

  it('every code in the README\'s error table is registered in shared/errors.ts', () => {
    expect(errorRows.map((row) => row.code).filter((code) => !(code in ERROR_CODES))).toEqual([]);
  });

  it.each([...CONFIG_KEYS])('config key %s is in the README\'s config table once', (key) => {
    expect(configKeys.filter((documented) => documented === key)).toEqual([key]);
  });

  it('every key in the README\'s config table is a config key the code reads (CONFIG_KEYS)', () => {
    expect(configKeys.filter((key) => !CONFIG_KEYS.has(key))).toEqual([]);
  });
});
