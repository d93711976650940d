import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkTenant } from '../../shared/items.js';
import { tenantFileName, tenantFilePath } from '../../shared/tenant-file-name.js';
import { seededRandom } from '../helpers/random.js';

const DB = '/srv/countapp/db';

const HOSTILE = [
  '', '..', '.', '...', '../x', '../../etc/passwd', '/', '/abs', 'a/b', 'a/../../b', '\\', '..\\..\\x', ' ', '   ',
  '%', '%2F', '%2f', '%2E%2E', '~', '~root', 'CON', 'con', 'NUL.txt', '.hidden', '.json', 'x.json', 'a.lock', '.wal',
  'a'.repeat(5000), '日本語', '🙂', 'x'.repeat(120), 'x'.repeat(120) + 'y', 'x'.repeat(119) + '/', 'x'.repeat(118) + '日',
  '../日本/🙂 %2F.~\u00a0é', '\u0000', 'a\u0000b', 'tab\tand\nnewline', '\ufeff', '\u202e', '*', '?', ':', '"', '<>|',
  '-', '--', '-rf', '_', 'a.b', 'a%2Eb', 'a%2eb', 'a%252Eb',
];


// Pieces chosen to make near-collisions likely: escapes written out, their lower-case
// forms, the characters they stand for, multi-byte characters and the hash separator.
const PIECES = ['a', 'b', 'A', 'x', '0', '9', '_', '-', '.', '..', '%', '%2E', '%2e', '2E', '/', '\\', '~', ' ', '\u00a0', 'é', 'e\u0301', 'ß', '日', '本', '🙂', '👍🏽', 'Ω', '\u0001', '\u007f'];

function generated(count: number): string[] {
  const next = seededRandom(20240601);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const tenants = new Set<string>();
  while (tenants.size < count) {
    const kind = next();
    if (kind < 0.7) {
      // Short strings of tricky pieces.
      const length = 1 + Math.floor(next() * 10);
      tenants.add(Array.from({ length }, () => pick(PIECES)).join(''));
    } else if (kind < 0.85) {
      // Long strings (hashed names) that differ only at the end.
      tenants.add('L'.repeat(100 + Math.floor(next() * 200)) + pick(PIECES) + pick(PIECES));
    } else {
      // Around the 120-character cut, where an escape may straddle the boundary.
      const length = 110 + Math.floor(next() * 15);
      tenants.add('c'.repeat(length) + Array.from({ length: 3 }, () => pick(PIECES)).join(''));
    }
  }
  return [...tenants];
}

function checkSafe(tenant: string): void {
  const file = tenantFilePath(DB, tenant);
  const base = path.basename(file);
  expect(path.dirname(file), JSON.stringify(tenant)).toBe(DB);
  expect(path.isAbsolute(file)).toBe(true);
  expect(path.resolve(DB, base)).toBe(file);
  expect(base).toBe(tenantFileName(tenant));
  expect(base).not.toMatch(/[/\\\0]/);
  expect(base.startsWith('.')).toBe(false);
  expect(base).not.toBe('.');
  expect(base).not.toBe('..');
  expect(base.endsWith('.json')).toBe(true);
  // Only portable characters: no spaces, control characters or shell metacharacters.
  expect(base).toMatch(/^[A-Za-z0-9_%~.-]+$/);
  expect(Buffer.byteLength(`${base}.lock`)).toBeLessThanOrEqual(255);
}

describe('tenantFilePath: hostile tenants', () => {
  it.each(HOSTILE.map((tenant) => [JSON.stringify(tenant).slice(0, 40), tenant]))('%s stays inside the database folder', (_name, tenant) => {
    checkSafe(tenant);
  });

  it('is injective over the hostile list', () => {
    const names = new Set(HOSTILE.map(tenantFileName));
    expect(names.size).toBe(new Set(HOSTILE).size);
  });

  it('keeps short names readable and reversible (percent-decoding gives the tenant back)', () => {
    for (const tenant of ['t1', 'a.b', 'a%2Eb', '日本語', '🙂', '../x', ' ', 'x'.repeat(120)]) {
      const base = tenantFileName(tenant);
      expect(base).not.toContain('~');
      expect(decodeURIComponent(base.slice(0, -'.json'.length))).toBe(tenant);
    }
    expect(tenantFileName('tenant-1_A')).toBe('tenant-1_A.json');
  });

  it('hashes names that would be too long, and never cuts an escape in half', () => {
    for (const tenant of ['x'.repeat(120) + 'y', 'x'.repeat(119) + '/', 'x'.repeat(118) + '日', 'a'.repeat(5000)]) {
      const base = tenantFileName(tenant);
      const [head, hash] = base.slice(0, -'.json'.length).split('~');
      expect(hash).toMatch(/^[0-9a-f]{32}$/);
      expect(head!.length).toBeLessThanOrEqual(120);
      expect(head).not.toMatch(/%(?![0-9A-F]{2})/);
      expect(tenant.startsWith(decodeURIComponent(head!))).toBe(true);
    }
  });
});

describe('tenantFileName over a large generated set', () => {
  const tenants = generated(20_000);

  it('is injective', () => {
    const byName = new Map<string, string>();
    for (const tenant of tenants) {
      const name = tenantFileName(tenant);
      const before = byName.get(name);
      if (before !== undefined) expect.fail(`${JSON.stringify(before)} and ${JSON.stringify(tenant)} both map to ${name}`);
      byName.set(name, tenant);
    }
    expect(byName.size).toBe(tenants.length);
  });

  it('is safe for every one', () => {
    for (const tenant of tenants) {
      const base = tenantFileName(tenant);
      expect(path.dirname(tenantFilePath(DB, tenant))).toBe(DB);
      expect(base).toMatch(/^[A-Za-z0-9_%~-][A-Za-z0-9_%~.-]*\.json$/);
      expect(Buffer.byteLength(`${base}.lock`)).toBeLessThanOrEqual(255);
    }
  });

  it('is stable: the same tenant always gives the same name', () => {
    for (const tenant of tenants.slice(0, 2000)) {
      expect(tenantFileName(tenant)).toBe(tenantFileName(String(tenant)));
      expect(tenantFileName(tenant)).toBe(tenantFileName(tenant.slice(0)));
    }
    // Pinned values: a change here renames every stored tenant file.
    expect(tenantFileName('t1')).toBe('t1.json');
    expect(tenantFileName('a.b')).toBe('a%2Eb.json');
    expect(tenantFileName('../x')).toBe('%2E%2E%2Fx.json');
    expect(tenantFileName('日')).toBe('%E6%97%A5.json');
    expect(tenantFileName('')).toBe('%.json');
  });

  it('tells near-collisions apart', () => {
    const near = ['a.b', 'a%2Eb', 'a%2eb', 'a%252Eb', 'A.b', 'a.B', 'é', 'e\u0301', '~', '%7E', 'x'.repeat(300) + 'a', 'x'.repeat(300) + 'b', 'x'.repeat(301)];
    expect(new Set(near.map(tenantFileName)).size).toBe(near.length);
  });

  it('relies on lone surrogates being refused before they reach it', () => {
    // UTF-8 has no form for a lone surrogate: Buffer.from writes U+FFFD, so these would share a file.
    expect(tenantFileName('\ud800')).toBe(tenantFileName('\ufffd'));
    expect(() => checkTenant('\ud800', 256)).toThrow();
    expect(() => checkTenant('\udc00x', 256)).toThrow();
    expect(checkTenant('\ufffd', 256)).toBe('\ufffd');
  });
});

describe('real files', () => {
  let root: string;
  let db: string;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-tenant-'));
    db = path.join(root, 'outer', 'db');
    fs.mkdirSync(db, { recursive: true });
  });

  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('writes one file per distinct hostile tenant, all inside the folder', () => {
    const distinct = [...new Set(HOSTILE)];
    for (const tenant of distinct) {
      const file = tenantFilePath(db, tenant);
      // Check before writing, so a broken mapping cannot write outside the temp dir.
      expect(path.dirname(file)).toBe(db);
      fs.writeFileSync(file, JSON.stringify(tenant), { flag: 'wx' });
      fs.writeFileSync(`${file}.lock`, '', { flag: 'wx' });
    }
    const entries = fs.readdirSync(db, { withFileTypes: true });
    expect(entries.length).toBe(2 * distinct.length);
    expect(entries.every((entry) => entry.isFile())).toBe(true);
    for (const tenant of distinct) {
      expect(JSON.parse(fs.readFileSync(tenantFilePath(db, tenant), 'utf8'))).toBe(tenant);
    }
    expect(fs.readdirSync(root)).toEqual(['outer']);
    expect(fs.readdirSync(path.join(root, 'outer'))).toEqual(['db']);
  });

  it('works as a lock directory name too (`<file>.lock` is a folder for proper-lockfile)', () => {
    for (const tenant of ['a'.repeat(5000), '🙂'.repeat(200), '../../x']) {
      fs.mkdirSync(`${tenantFilePath(db, tenant)}.lock`);
    }
    expect(fs.readdirSync(db)).toHaveLength(3);
  });
});
