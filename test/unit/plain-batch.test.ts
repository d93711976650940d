import { describe, expect, it } from 'vitest';
import { AppError } from '../../shared/errors.js';
import { parseBatch, validateBatch, type Item, type Limits } from '../../shared/items.js';
import { readPlainBatch } from '../../shared/plain-batch.js';
import { mutatedTexts } from '../helpers/random.js';

const LIMITS: Limits = { max_batch_items: 5, max_id_length: 8, max_tenant_length: 6 };

/** What the full path (JSON.parse, then validateBatch) makes of `text`: items, or the error code. */
function fullPath(text: string, limits: Limits = LIMITS): Item[] | string {
  try {
    return validateBatch(JSON.parse(text), limits);
  } catch (err) {
    return err instanceof AppError ? err.code : 'invalid_json';
  }
}

describe('readPlainBatch', () => {
  it.each([
    ['[{"id":"a","tenant":"t"}]', [{ id: 'a', tenant: 't' }]],
    ['[{"tenant":"t","id":"a"},{"id":"b","tenant":"u"}]', [{ id: 'a', tenant: 't' }, { id: 'b', tenant: 'u' }]],
    [' [ { "id" : "a b" , "tenant" : "t" } , {"id": "😀ü", "tenant": "日本"} ] ', [{ id: 'a b', tenant: 't' }, { id: '😀ü', tenant: '日本' }]],
    ['[]', []],
    ['  [ ]  ', []],
  ])('reads %s', (text, expected) => {
    const items = readPlainBatch(text, LIMITS);
    expect(items).toEqual(expected);
    expect(items).toEqual(fullPath(text));
  });

  it.each([
    ['an escape', '[{"id":"a\\"b","tenant":"t"}]'],
    ['a \\u escape', '[{"id":"\\u0041","tenant":"t"}]'],
    ['a newline between tokens', '[{"id":"a",\n"tenant":"t"}]'],
    ['a trailing newline', '[{"id":"a","tenant":"t"}]\n'],
    ['a tab', '[{"id":"a",\t"tenant":"t"}]'],
    ['a DEL character in an id', '[{"id":"a\u007f","tenant":"t"}]'],
    ['a C1 control character (U+0085) in an id', '[{"id":"a\u0085","tenant":"t"}]'],
    ['a C1 control character (U+0080) in a tenant', '[{"id":"a","tenant":"\u0080"}]'],
    ['a C1 control character (U+009F) in a tenant', '[{"id":"a","tenant":"t\u009f"}]'],
    ['a third key', '[{"id":"a","tenant":"t","x":1}]'],
    ['a repeated key', '[{"id":"a","id":"b"}]'],
    ['keys in another case', '[{"ID":"a","Tenant":"t"}]'],
    ['a number id', '[{"id":1,"tenant":"t"}]'],
    ['a null tenant', '[{"id":"a","tenant":null}]'],
    ['an empty id', '[{"id":"","tenant":"t"}]'],
    ['an id over the limit', '[{"id":"123456789","tenant":"t"}]'],
    ['a tenant over the limit', '[{"id":"a","tenant":"1234567"}]'],
    ['too many items', `[${Array.from({ length: 6 }, (_, i) => `{"id":"${i}","tenant":"t"}`).join(',')}]`],
    ['a trailing comma', '[{"id":"a","tenant":"t"},]'],
    ['text after the array', '[{"id":"a","tenant":"t"}]x'],
    ['a second array', '[][]'],
    ['no closing bracket', '[{"id":"a","tenant":"t"}'],
    ['an unclosed string', '[{"id":"a'],
    ['an object at the top', '{"id":"a","tenant":"t"}'],
    ['an array item', '[["a","t"]]'],
    ['nothing', ''],
  ])('leaves %s to the full path', (_what, text) => {
    expect(readPlainBatch(text, LIMITS)).toBeUndefined();
  });

  it('agrees with the full path on 50,000 batches mutated at random: anything it reads, the full path reads the same', () => {
    const pieces = ['"', '\\', ',', ':', '{', '}', '[', ']', ' ', '\n', 'id', 'tenant', '"id"', '"tenant"', 'a', 'ü', '\u007f', '\u0085', '\u00a0', '1', 'null', '""'];
    const bases = ['[{"id":"a","tenant":"t"}]', '[{"tenant":"t","id":"bb"},{"id":"c","tenant":"uu"}]', '[ {"id" : "x y", "tenant" : "t"} ]', '[]'];
    let read = 0;
    for (const text of mutatedTexts({ seed: 12345, count: 50_000, bases, pieces, edits: 3 })) {
      const items = readPlainBatch(text, LIMITS);
      if (items === undefined) continue;
      read++;
      expect({ text, items: fullPath(text) }).toEqual({ text, items });
    }
    // The mutations must leave enough batches readable for the comparison to mean something.
    expect(read).toBeGreaterThan(1_000);
  });
});

describe('parseBatch', () => {
  it('refuses a C1 control character (U+0080-U+009F) like the others, on the plain path and the full one alike', () => {
    for (const char of ['\u0080', '\u0085', '\u009f']) {
      for (const text of [`[{"id":"a${char}","tenant":"t"}]`, `[{"id":"a","tenant":"${char}"}]`, `[{"ID":"a${char}","tenant":"t"}]`]) {
        expect(readPlainBatch(text, LIMITS), text).toBeUndefined();
        expect(fullPath(text), text).toBe('invalid_item');
        expect(() => parseBatch(Buffer.from(text), LIMITS), text).toThrow(/control characters/);
      }
    }
  });

  it('answers a batch the plain reader leaves with the same items or error as before', () => {
    const text = '[{"ID":"a","tenant":"t"}, {"id":"b","tenant":"t","extra":[1]}]';
    expect(readPlainBatch(text, LIMITS)).toBeUndefined();
    expect(parseBatch(Buffer.from(text), LIMITS)).toEqual([{ id: 'a', tenant: 't' }, { id: 'b', tenant: 't', extra: [1] }]);
    expect(() => parseBatch(Buffer.from('[{"id":"","tenant":"t"}]'), LIMITS)).toThrow(/Item 0: `id` must not be empty/);
  });
});
