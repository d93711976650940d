import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { tenantFilePath } from '../../shared/tenant-file-name.js';
import { locksFolder } from '../../worker/store/shards.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/persist-ids.mjs', import.meta.url));
let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
}

it('8 worker processes persisting one tenant at the same moment lose nothing: the file holds exactly the union', async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-concurrent-'));
  const processes = 8;
  const perProcess = 5000;
  // Ranges overlap by half: process i holds ids [i*2500, i*2500 + 5000).
  const startAt = Date.now() + 1500;
  const codes = await Promise.all(
    Array.from({ length: processes }, (_, i) => run([dir!, 'shared-tenant', String(i * 2500), String(i * 2500 + perProcess), String(startAt), '5'])),
  );
  expect(codes).toEqual(Array(processes).fill(0));

  const lines = readFileSync(tenantFilePath(dir, 'shared-tenant'), 'utf8').split('\n');
  expect(lines.at(-1)).toBe(''); // ends with a complete line
  const ids: string[] = [];
  for (const line of lines.filter(Boolean).slice(1)) {
    const value: unknown[] = JSON.parse(line); // every line is valid JSON: nothing half-written
    ids.push(...(value.slice(0, -1) as string[]));
    // Each append ends with the tenant's distinct count after it: exact at every line.
    expect(value.at(-1)).toBe(new Set(ids).size);
  }
  const expected = 7 * 2500 + perProcess; // 22,500 distinct ids
  expect(new Set(ids).size).toBe(expected);
  // Each persist read what the others appended first, so no id was written twice.
  expect(ids).toHaveLength(expected);
  expect(readdirSync(locksFolder(dir))).toEqual([]);
}, 60_000);
