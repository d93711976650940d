import { describe, expect, it } from 'vitest';
import { decodeIdMap, decodeIdMapChunks, encodeIdMap, idCount, type IdMap } from '../../worker/store/id-map.js';
import { Pending } from '../../worker/pending.js';

describe('id maps', () => {
  it('round-trips through JSON, a tenant named __proto__ included', () => {
    const map: IdMap = new Map([['__proto__', ['a']], ['t', ['b', 'c']], ['日本', ['d']]]);
    const [text] = encodeIdMap(map);
    expect(decodeIdMap(JSON.parse(text!))).toEqual(map);
  });

  it('splits into chunks of about the size asked, a big tenant across several, and puts them back together', () => {
    const map: IdMap = new Map([['before', ['a']], ['big', Array.from({ length: 1000 }, (_, i) => `id-${i}`)], ['small', ['x']]]);
    const chunks = encodeIdMap(map, 2000);
    expect(chunks.length).toBeGreaterThan(3);
    for (const chunk of chunks) expect(chunk.length).toBeLessThan(2100);
    // Every id of the split tenant comes back (the merge thread once kept only its last chunk's).
    expect(decodeIdMapChunks(chunks)).toEqual(map);
  });

  it('refuses what is not an object of string arrays, saying why', () => {
    expect(() => decodeIdMap([])).toThrow(/object/);
    expect(() => decodeIdMap({ t: 'x' })).toThrow(/tenant "t"/);
    expect(() => decodeIdMap({ t: [1] })).toThrow(/array of strings/);
  });
});

describe('Pending', () => {
  it('gathers ids by tenant, takes some or all, and rebuilds itself from its log records', () => {
    const pending = new Pending();
    pending.addItems([{ tenant: 'a', id: '1' }, { tenant: 'a', id: '2' }, { tenant: 'b', id: '1' }, { tenant: 'a', id: '1' }]);
    pending.addMap(new Map([['c', ['9']]]));
    expect(pending.ids).toBe(5);
    expect(pending.tenants).toBe(3);
    const again = new Pending();
    for (const record of pending.toRecords()) again.addMap(decodeIdMap(JSON.parse(record.toString())));
    expect(again.take()).toEqual(new Map([['a', ['1', '2', '1']], ['b', ['1']], ['c', ['9']]]));
    expect(pending.takeTenants(['a', 'zz'])).toEqual(new Map([['a', ['1', '2', '1']]]));
    expect(pending.ids).toBe(2);
    expect(idCount(pending.take())).toBe(2);
    expect(pending.ids).toBe(0);
  });
});
