import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Logger } from '../../shared/log.js';
import { tenantFilePath } from '../../shared/tenant-file.js';
import { TenantStore } from '../../worker/tenant-store.js';

const log = new Logger('test');
let dir: string;

function store(): TenantStore {
  return new TenantStore({ database: dir, log, lockStaleMs: 2000, sync: () => false });
}

function items(tenant: string, ...ids: string[]) {
  return ids.map((id) => ({ tenant, id }));
}

/** What the worker does with a batch once its write-ahead log has it: count the pairs it had not seen. */
function add(s: TenantStore, batch: { tenant: string; id: string }[]): string[] {
  const fresh = s.unseen(batch);
  s.addPairs(fresh);
  return fresh;
}

/** Every id in a tenant file, by reading it the way a person would: one JSON value a line. */
function idsInFile(tenant: string): string[] {
  const lines = readFileSync(tenantFilePath(dir, tenant), 'utf8').split('\n').filter(Boolean);
  return lines.flatMap((line) => {
    try {
      const value = JSON.parse(line);
      return Array.isArray(value) ? value : [];
    } catch {
      return [];
    }
  });
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-store-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('TenantStore', () => {
  it('dedupes within a batch, across batches and across tenants', async () => {
    const s = store();
    expect(s.unseen(items('t1', 'a'))).toEqual(['t1', 'a']);
    expect(await s.count('t1')).toBe(0); // seen is not counted: only what the log has is
    add(s, [...items('t1', 'a', 'b', 'a'), ...items('t2', 'a')]);
    expect(add(s, items('t1', 'b', 'c'))).toEqual(['t1', 'c']);
    expect(await s.count('t1')).toBe(3);
    expect(await s.count('t2')).toBe(1);
    expect(await s.count('unknown')).toBe(0);
  });

  it('persists pending ids to the tenant file and keeps the count', async () => {
    const s = store();
    add(s, items('t1', '1', '4'));
    expect(await s.persist('t1')).toBe(2);
    expect(s.pendingIds()).toBe(0);
    expect(idsInFile('t1').sort()).toEqual(['1', '4']);
    expect(await s.count('t1')).toBe(2);
    // The file starts with a header naming the tenant.
    expect(JSON.parse(readFileSync(tenantFilePath(dir, 't1'), 'utf8').split('\n')[0]!)).toEqual({ tenant: 't1' });
  });

  it('merges with what another worker wrote: union, nothing written twice', async () => {
    const a = store();
    const b = store();
    add(a, items('t', '1', '2'));
    add(b, items('t', '2', '3'));
    expect(await b.count('t')).toBe(2);
    await a.persist('t');
    expect(await b.persist('t')).toBe(1); // only "3": "2" was already in the file
    expect(idsInFile('t').sort()).toEqual(['1', '2', '3']);
    expect(await a.count('t')).toBe(3);
    expect(await b.count('t')).toBe(3);
    expect(await store().count('t')).toBe(3);
  });

  it('sees ids appended by another worker without re-reading the whole file', async () => {
    const a = store();
    const b = store();
    add(a, items('t', ...Array.from({ length: 1000 }, (_, i) => `x${i}`)));
    await a.persist('t');
    expect(await b.count('t')).toBe(1000);
    add(a, items('t', 'new'));
    await a.persist('t');
    expect(await b.count('t')).toBe(1001);
  });

  it('skips a line torn by a crash and keeps appending parsable lines after it', async () => {
    const s = store();
    add(s, items('t', 'a'));
    await s.persist('t');
    appendFileSync(tenantFilePath(dir, 't'), '["torn-1","tor'); // a writer died mid-append
    const other = store();
    add(other, items('t', 'b'));
    await other.persist('t');
    expect(idsInFile('t').sort()).toEqual(['a', 'b']);
    expect(await store().count('t')).toBe(2);
  });

  it('never lets the count go down while persisting', async () => {
    const s = store();
    const seen: number[] = [];
    for (let round = 0; round < 5; round++) {
      add(s, items('t', ...Array.from({ length: 50 }, (_, i) => `${round}-${i}`)));
      const persisting = s.persist('t');
      seen.push(await s.count('t'));
      await persisting;
      seen.push(await s.count('t'));
    }
    expect(seen).toEqual([...seen].sort((x, y) => x - y));
    expect(seen.at(-1)).toBe(250);
  });

  it('keeps hostile tenants inside the database folder', async () => {
    const s = store();
    const hostile = ['../escape', '/', '.', '..', ' ', 'a/../../b', '日本'];
    for (const tenant of hostile) add(s, items(tenant, 'x'));
    for (const tenant of hostile) await s.persist(tenant);
    expect(readdirSync(dir).filter((name) => name.endsWith('.json'))).toHaveLength(hostile.length);
    expect(readdirSync(path.dirname(dir)).filter((name) => name === 'escape' || name === 'b')).toEqual([]);
    for (const tenant of hostile) expect(await store().count(tenant)).toBe(1);
  });

  it('keeps ids pending when the disk is full, and persists them once it is back', async () => {
    const s = store();
    const file = tenantFilePath(dir, 't');
    symlinkSync('/dev/full', file); // every write answers ENOSPC
    add(s, items('t', 'a', 'b'));
    await expect(s.persist('t')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(s.pendingIds()).toBe(2);
    expect(await s.count('t')).toBe(2);
    unlinkSync(file);
    expect(await s.persist('t')).toBe(2);
    expect(idsInFile('t').sort()).toEqual(['a', 'b']);
  });

  it('fsyncs every file appended in a round afterwards, and keeps a file that failed on the list', async () => {
    const s = new TenantStore({ database: dir, log, lockStaleMs: 2000, sync: () => true });
    add(s, [...items('a', '1'), ...items('b', '2')]);
    await s.persist('a');
    await s.persist('b');
    await s.syncWritten();
    add(s, items('a', '3'));
    await s.persist('a');
    const file = tenantFilePath(dir, 'a');
    const saved = readFileSync(file);
    rmSync(file); // the sync cannot open it now
    await expect(s.syncWritten()).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(s.syncWritten()).rejects.toMatchObject({ code: 'ENOENT' }); // still listed
    writeFileSync(file, saved);
    await s.syncWritten();
  });

  it('reads a file written by an earlier run in full', async () => {
    writeFileSync(tenantFilePath(dir, 't'), '{"tenant":"t"}\n["a","b"]\n["b","c"]\n');
    const s = store();
    add(s, items('t', 'c', 'd'));
    expect(await s.count('t')).toBe(4);
    expect(await s.persist('t')).toBe(1);
  });
});
