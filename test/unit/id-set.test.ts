import { describe, expect, it } from 'vitest';
import { IdSet } from '../../worker/store/id-set.js';

/** Ids of every shape the set must tell apart: short, long (1-, 2- and 3-byte length prefixes), multi-byte, and near-twins. */
function mixedIds(n: number): string[] {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    switch (i % 6) {
      case 0: ids.push(`m${i}`); break;
      case 1: ids.push(`日本-${i}-🎉`); break;
      case 2: ids.push(`${'x'.repeat(130)}${i}`); break; // > 127 bytes: two-byte prefix
      case 3: ids.push(`é${i}`); break;
      case 4: ids.push(`${i}`.padStart(40, '0')); break;
      default: ids.push(`m${i}a`);
    }
  }
  return ids;
}

describe('IdSet', () => {
  it('holds exactly what a Set holds, through the small form, the compact form and many table growths', () => {
    const ids = mixedIds(20_000);
    const set = new IdSet();
    const reference = new Set<string>();
    // Every id twice, interleaved, so repeats come both soon and late.
    for (let round = 0; round < 2; round++) {
      for (const id of ids) {
        expect(set.add(id)).toBe(!reference.has(id));
        reference.add(id);
      }
    }
    expect(set.size).toBe(reference.size);
    expect([...set]).toEqual([...reference]);
    for (const id of ids) expect(set.has(id)).toBe(true);
    for (const id of ['m', 'm1a1', 'x'.repeat(131), '日本', '', 'm19999b']) expect(set.has(id)).toBe(false);
  });

  it('keeps ids that differ only in a byte, or in length, apart', () => {
    const set = new IdSet();
    const ids = ['a', 'aa', 'ab', 'ba', 'a ', ' a', 'å', 'a\u030a', 'A'];
    for (let i = 0; i < 50; i++) ids.push(`k${i}`, `k${i}.`);
    for (const id of ids) expect(set.add(id)).toBe(true);
    expect(set.size).toBe(ids.length);
    for (const id of ids) expect(set.add(id)).toBe(false);
  });

  it('stores an id longer than 16 KiB (three-byte length) and finds it again', () => {
    const set = new IdSet();
    for (let i = 0; i < 20; i++) set.add(`id${i}`);
    const long = 'ü'.repeat(65_536); // 131,072 bytes
    expect(set.add(long)).toBe(true);
    expect(set.add(`${long.slice(1)}u`)).toBe(true);
    expect(set.has(long)).toBe(true);
    expect(set.add(long)).toBe(false);
    expect([...set]).toContain(long);
  });

  it('truncate undoes the latest adds, in either form, and the set goes on working', () => {
    const small = new IdSet();
    small.add('a');
    small.add('b');
    small.truncate(1);
    expect([...small]).toEqual(['a']);
    expect(small.add('b')).toBe(true);

    const big = new IdSet();
    const ids = mixedIds(1_000);
    for (const id of ids) big.add(id);
    big.truncate(600);
    expect(big.size).toBe(600);
    expect([...big]).toEqual(ids.slice(0, 600));
    expect(big.has(ids[700]!)).toBe(false);
    expect(big.has(ids[599]!)).toBe(true);
    for (const id of ids) big.add(id);
    expect([...big]).toEqual(ids);

    // Undoing past the switch to the compact form keeps it compact, and correct.
    const switched = new IdSet();
    for (const id of ids.slice(0, 5)) switched.add(id);
    for (const id of ids.slice(5, 20)) switched.add(id);
    switched.truncate(5);
    expect([...switched]).toEqual(ids.slice(0, 5));
  });
});
