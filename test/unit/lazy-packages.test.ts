import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { lazyModule } from '../../shared/lazy-module.js';
import { REPO_ROOT } from '../helpers/repo.js';
import { TempDirs } from '../helpers/temp-dir.js';

const temp = new TempDirs();
afterEach(() => temp.removeAll());

describe('packages loaded at their first use', () => {
  it('neither process loads express, axios or undici at start; express comes with the first request that needs it', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'test', 'fixtures', 'lazy-packages.mjs')], { timeout: 30_000 });
    const report = JSON.parse(stdout) as Record<string, unknown>;
    const none = { express: false, axios: false, undici: false };
    expect(report.afterImports).toEqual(none);
    // A hot route (health, items, counts, hand-overs) never loads express.
    expect(report.hot).toEqual({ status: 200, body: '{"status":"ok"}' });
    expect(report.afterHot).toEqual(none);
    // An operations route does, and is answered through it.
    expect(report.ops).toEqual({ status: 200, body: '{"openapi":"3.1.0"}' });
    expect(report.afterOps).toEqual({ ...none, express: true });
    const unknown = report.unknown as { status: number; body: string };
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toMatchObject({ error: { code: 'not_found', message: 'No route for GET /no-such-route.' } });
  });

  it('a load that failed is tried again at the next use, then kept', () => {
    const dir = temp.make('countapp-lazy-');
    const marker = path.join(dir, 'fail');
    const file = path.join(dir, 'flaky.cjs');
    fs.writeFileSync(marker, '');
    fs.writeFileSync(file, `if (require('node:fs').existsSync(${JSON.stringify(marker)})) throw Object.assign(new Error('too many open files'), { code: 'EMFILE' });\nmodule.exports = { value: 42 };\n`);
    const load = lazyModule<{ value: number }>(file);
    expect(() => load()).toThrow(expect.objectContaining({ code: 'EMFILE' }));
    expect(() => load()).toThrow(expect.objectContaining({ code: 'EMFILE' }));
    fs.rmSync(marker);
    const first = load();
    expect(first.value).toBe(42);
    // Loaded once: the same module from then on.
    expect(load()).toBe(first);
  });
});
