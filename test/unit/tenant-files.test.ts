import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Logger } from '../../shared/log.js';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { countAtEndOfLine, parseTenantLines } from '../../worker/store/tenant-file-format.js';
import { TenantFileError, TenantFiles } from '../../worker/store/tenant-files.js';

const log = new Logger('test');
let dir: string;

/** A worker's view of the database folder (several stand for several workers). */
const files = (): TenantFiles => new TenantFiles(dir, log);
const lines = (tenant: string): string[] => readFileSync(tenantFilePath(dir, tenant), 'utf8').split('\n');
const idsInFile = (tenant: string): string[] => parseTenantLines(readFileSync(tenantFilePath(dir, tenant), 'utf8')).ids;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-files-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('TenantFiles', () => {
  it('writes a header, then each append with the count after it; any worker counts from the end of the file', () => {
    const a = files();
    expect(a.mergeLocked('t1', ['1', '4', '1'])).toBe(2);
    expect(a.mergeLocked('t1', ['4', '5'])).toBe(1);
    expect(lines('t1')).toEqual(['{"tenant":"t1"}', '["1","4",2]', '["5",3]', '']);
    expect(a.count('t1')).toBe(3);
    expect(files().count('t1')).toBe(3);
    expect(files().count('unknown')).toBe(0);
  });

  it('merges with what another worker appended: union, nothing written twice, every count exact', () => {
    const a = files();
    const b = files();
    a.mergeLocked('t', ['1', '2']);
    expect(b.mergeLocked('t', ['2', '3'])).toBe(1); // "2" is in the file already
    expect(a.mergeLocked('t', ['3', '4', '1'])).toBe(1); // a catches up on b's "3" first
    expect(idsInFile('t').sort()).toEqual(['1', '2', '3', '4']);
    expect(lines('t').slice(1, -1).map(countAtEndOfLine)).toEqual([2, 3, 4]);
    expect(b.count('t')).toBe(4);
  });

  it('skips a line torn by a crash, ends it, and keeps every count exact', () => {
    const a = files();
    a.mergeLocked('t', ['a']);
    appendFileSync(tenantFilePath(dir, 't'), '["torn-1","tor'); // a writer died mid-append
    expect(files().count('t')).toBe(1); // the torn tail is not read
    const b = files();
    expect(b.mergeLocked('t', ['b'])).toBe(1);
    expect(idsInFile('t').sort()).toEqual(['a', 'b']);
    expect(files().count('t')).toBe(2);
    expect(a.mergeLocked('t', ['c'])).toBe(1);
    expect(files().count('t')).toBe(3);
  });

  it('reads the count behind a long last line and behind a long torn tail', () => {
    const a = files();
    const many = Array.from({ length: 500 }, (_, i) => `a-long-id-${i}`);
    a.mergeLocked('t', many);
    expect(files().count('t')).toBe(500);
    appendFileSync(tenantFilePath(dir, 't'), `["${'x'.repeat(5000)}`);
    expect(files().count('t')).toBe(500);
  });

  it('counts a file of an earlier version (lines of ids without counts) in full, and appends exact counts to it', () => {
    writeFileSync(tenantFilePath(dir, 't'), '{"tenant":"t"}\n["a","b"]\n["b","c"]\n');
    expect(files().count('t')).toBe(3);
    const a = files();
    expect(a.mergeLocked('t', ['c', 'd'])).toBe(1);
    expect(lines('t').at(-2)).toBe('["d",4]');
    expect(files().count('t')).toBe(4);
  });

  it('writes back what it held when its tenant file was deleted or replaced', () => {
    const a = files();
    a.mergeLocked('gone', ['1', '2']);
    a.mergeLocked('swapped', ['1', '2']);
    rmSync(tenantFilePath(dir, 'gone'));
    rmSync(tenantFilePath(dir, 'swapped'));
    writeFileSync(tenantFilePath(dir, 'swapped'), '{"tenant":"swapped"}\n["3",1]\n');
    expect(a.vanished().sort()).toEqual(['gone', 'swapped']);
    expect(a.mergeLocked('gone', [])).toBe(2);
    expect(a.mergeLocked('swapped', [])).toBe(2);
    expect(files().count('gone')).toBe(2);
    expect(files().count('swapped')).toBe(3);
    expect(a.vanished()).toEqual([]);
  });

  it('a distrusted tenant (its lock was lost) is read afresh, and what it held is written back even when its file is gone', () => {
    const a = files();
    a.mergeLocked('deleted', ['1', '2']);
    a.mergeLocked('appended', ['1']);
    // The lock was lost: the database deleted under it, or another process appended meanwhile.
    rmSync(tenantFilePath(dir, 'deleted'));
    files().mergeLocked('appended', ['9']);
    a.distrust(() => true);
    expect(a.held()).toEqual({ tenants: 2, ids: 3 });
    expect(a.vanished().sort()).toEqual(['appended', 'deleted']);
    expect(a.mergeLocked('deleted', [])).toBe(2);
    expect(a.mergeLocked('appended', ['1', '5'])).toBe(1);
    expect(files().count('deleted')).toBe(2);
    expect(files().count('appended')).toBe(3);
    expect(parseTenantLines(readFileSync(tenantFilePath(dir, 'appended'), 'utf8')).ids.sort()).toEqual(['1', '5', '9']);
  });

  it('refuses a tenant path that is a symlink or a directory, naming the file, and writes nothing through it', () => {
    const outside = path.join(dir, '..', `${path.basename(dir)}-outside.json`);
    writeFileSync(outside, '');
    try {
      symlinkSync(outside, tenantFilePath(dir, 'linked'));
      mkdirSync(tenantFilePath(dir, 'folder'));
      const a = files();
      expect(() => a.mergeLocked('linked', ['x'])).toThrow(TenantFileError);
      expect(() => a.mergeLocked('linked', ['x'])).toThrow(/linked\.json is a symbolic link/);
      expect(() => a.count('linked')).toThrow(/symbolic link/);
      expect(() => a.mergeLocked('folder', ['x'])).toThrow(/folder\.json is a directory/);
      expect(readFileSync(outside, 'utf8')).toBe('');
      // The others are not affected.
      expect(a.mergeLocked('fine', ['x'])).toBe(1);
    } finally {
      rmSync(outside, { force: true });
    }
  });

  it('keeps hostile tenants inside the database folder', () => {
    const a = files();
    const hostile = ['../escape', '/', '.', '..', ' ', 'a/../../b', '日本', '__proto__'];
    for (const tenant of hostile) a.mergeLocked(tenant, ['x']);
    expect(readdirSync(dir).filter((name) => name.endsWith('.json'))).toHaveLength(hostile.length);
    expect(readdirSync(path.dirname(dir)).filter((name) => name === 'escape' || name === 'b')).toEqual([]);
    for (const tenant of hostile) expect(files().count(tenant)).toBe(1);
  });

  it('lists the files appended to since the last checkpoint, and whether one was created', () => {
    const a = files();
    a.mergeLocked('x', ['1']);
    a.mergeLocked('y', ['1']);
    const first = a.takeUnsynced();
    expect(first.files.sort()).toEqual([tenantFilePath(dir, 'x'), tenantFilePath(dir, 'y')].sort());
    expect(first.folder).toBe(true);
    a.mergeLocked('x', ['2']);
    expect(a.takeUnsynced()).toEqual({ files: [tenantFilePath(dir, 'x')], folder: false });
    expect(a.takeUnsynced()).toEqual({ files: [], folder: false });
  });

  it('forgets the ids of tenants it no longer writes, and reads them again when it does', () => {
    const a = files();
    a.mergeLocked('kept', ['1']);
    a.mergeLocked('dropped', ['1', '2']);
    expect(a.held()).toEqual({ tenants: 2, ids: 3 });
    expect(a.forget((tenant) => tenant === 'kept')).toBe(1);
    expect(a.held()).toEqual({ tenants: 1, ids: 1 });
    files().mergeLocked('dropped', ['3']);
    expect(a.mergeLocked('dropped', ['2', '3', '4'])).toBe(1);
    expect(files().count('dropped')).toBe(4);
  });
});

describe('countAtEndOfLine', () => {
  it.each([
    ['["a","b",2]', 2],
    ['[7]', 7],
    ['{"tenant":"t"}', 'header'],
    ['["a","b"]', undefined],
    ['["a",2', undefined],
    ['"x",12]', 12],
  ])('%s → %s', (line, expected) => {
    expect(countAtEndOfLine(line)).toBe(expected);
  });
});
