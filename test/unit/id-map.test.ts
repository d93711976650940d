import { describe, expect, it } from 'vitest';
import { decodeIdMap, decodeIdMapChunks, decodeIdMapCompact, encodeIdMap, encodeIdMapCompact, idCount, type IdMap } from '../../worker/store/id-map.js';
import { Pending } from '../../worker/pending.js';

describe('id maps', () => {
  it('round-trips through JSON, a tenant named __proto__ included', () => {
    const map: IdMap = new Map([['__proto__', ['a']], ['t', ['b', 'c']], ['日本', ['d']]]);
    const [text] = encodeIdMap(map);
    expect(decodeIdMap(JSON.parse(text!))).toEqual(map);
  });

  it('round-trips through the compact form: tenants and ids with quotes, commas, spaces, backslashes and any Unicode', () => {
    const map: IdMap = new Map([['__proto__', ['a']], ['t "x", y', ['b\\', '{"id":1}', ' ']], ['日本', ['😀', 'ü']], ['constructor', ['toString']]]);
    const [text] = encodeIdMapCompact(map);
    expect(text).toBe('__proto__\u001fa\u001et "x", y\u001fb\\\u001f{"id":1}\u001f \u001e日本\u001f😀\u001fü\u001econstructor\u001ftoString');
    expect(decodeIdMapCompact(text!)).toEqual(map);
    expect(encodeIdMapCompact(new Map([['empty', []]]))).toEqual([]);
    expect(decodeIdMapCompact('')).toEqual(new Map());
  });

  it('splits the compact form into chunks of about the size asked, a big tenant across several, and puts them back together', () => {
    const map: IdMap = new Map([['before', ['a']], ['big', Array.from({ length: 1000 }, (_, i) => `id-${i}`)], ['small', ['x']]]);
    const chunks = encodeIdMapCompact(map, 2000);
    expect(chunks.length).toBeGreaterThan(3);
    for (const chunk of chunks) expect(chunk.length).toBeLessThan(2100);
    // Every id of the split tenant comes back (the merge thread once kept only its last chunk's).
    expect(decodeIdMapChunks(chunks)).toEqual(map);
    for (const chunk of encodeIdMap(map, 2000)) expect(chunk.length).toBeLessThan(2100);
  });

  it('refuses a compact text that is not tenants each followed by ids', () => {
    expect(() => decodeIdMapCompact('tenant-without-ids')).toThrow(TypeError);
    expect(() => decodeIdMapCompact('\u001fid')).toThrow(TypeError);
    expect(() => decodeIdMapCompact('t\u001fa\u001f\u001fb')).toThrow(TypeError);
    expect(() => decodeIdMapCompact('t\u001fa\u001e')).toThrow(TypeError);
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
