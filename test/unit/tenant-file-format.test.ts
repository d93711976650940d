import { describe, expect, it } from 'vitest';
import { encodeAppend, encodeHeader, parseTenantLines, readPlainIdLine } from '../../worker/store/tenant-file-format.js';
import { mutatedTexts } from '../helpers/random.js';

/** What JSON.parse makes of a line, or 'bad' when it throws. */
function parsed(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return 'bad';
  }
}

describe('readPlainIdLine', () => {
  it.each([
    ['["a","b",42]'],
    ['["a"]'],
    ['["",5]'],
    ['[""]'],
    ['["a,b","c d","",7]'],
    ['["日本","😀",2]'],
    ['["a\u007f",1]'],
    ['["a",0]'],
    ['["a",99999999999999999999]'],
  ])('reads %s as JSON.parse does', (line) => {
    expect(readPlainIdLine(line)).toEqual(JSON.parse(line));
  });

  it.each([
    ['an escaped quote', '["a\\"b",1]'],
    ['a space', '["a", "b",2]'],
    ['a count with a leading zero (not JSON)', '["a",042]'],
    ['a negative count', '["a",-1]'],
    ['an exponent', '["a",1e5]'],
    ['a trailing comma', '["a",]'],
    ['a stray quote', '["a"",3]'],
    ['no separator before the count', '["a"5]'],
    ['a torn line', '["a","b'],
    ['the header', '{"tenant":"t"}'],
    ['an empty array', '[]'],
    ['a quote alone', '["]'],
  ])('leaves %s to JSON.parse', (_what, line) => {
    expect(readPlainIdLine(line)).toBeUndefined();
  });

  it('reads what encodeAppend writes', () => {
    const ids = ['a', 'b"c', 'd\\e', '', '日本', 'x y'];
    const line = encodeAppend(ids, 9).trimEnd();
    expect(readPlainIdLine(line) ?? JSON.parse(line)).toEqual([...ids, 9]);
    expect(readPlainIdLine(encodeAppend(['p', 'q'], 2).trimEnd())).toEqual(['p', 'q', 2]);
  });

  it('agrees with JSON.parse on 50,000 lines mutated at random: anything it reads, JSON.parse reads the same', () => {
    const pieces = ['"', '\\', ',', '[', ']', ' ', '0', '7', '-', 'a', '","', 'ü', '\n'];
    const bases = ['["a","bb",2]', '["a"]', '["x","y","z",10]', '["",1]'];
    let read = 0;
    for (const line of mutatedTexts({ seed: 2026, count: 50_000, bases, pieces, edits: 1 })) {
      const value = readPlainIdLine(line);
      if (value === undefined) continue;
      read++;
      expect({ line, value: parsed(line) }).toEqual({ line, value });
    }
    expect(read).toBeGreaterThan(5_000);
  });
});

describe('parseTenantLines', () => {
  it('takes every id of the complete lines, the header and torn lines skipped, plain or not', () => {
    const text = '{"tenant":"t"}\n["a","b",2]\n["c\\"d", "e",4]\n["torn\n["f",5]\n';
    expect(parseTenantLines(text)).toEqual({ ids: ['a', 'b', 'c"d', 'e', 'f'], badLines: 1 });
  });

  it('reads ids holding C1 control characters, which files written before they were refused may hold', () => {
    const text = `${encodeHeader('t\u0085')}${encodeAppend(['a\u0085', 'b\u009f'], 2)}${encodeAppend(['\u0080'], 3)}`;
    expect(parseTenantLines(text)).toEqual({ ids: ['a\u0085', 'b\u009f', '\u0080'], badLines: 0 });
  });
});
