import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Logger } from '../../shared/log.js';
import { AppError } from '../../shared/errors.js';
import { REPO_ROOT } from '../helpers/repo.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'log-then-sigkill.mjs');
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) removeTempDir(dir);
});

function tempDir(): string {
  const dir = makeTempDir('countapp-log-');
  dirs.push(dir);
  return dir;
}

function records(file: string): Array<Record<string, any>> {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, any>);
}

describe('Logger', () => {
  it('writes JSON lines with level, time, process, message, error id and code', () => {
    const file = path.join(tempDir(), 'x.log');
    const log = new Logger('worker-5001', file);
    log.info('hello 100% %s', { tenants: 3 });
    log.warn('POST /items: bad item', { code: 'invalid_item' }, 'abc123');
    const id = log.error('could not persist', new AppError('storage_unavailable', 'disk full', { cause: new Error('ENOSPC') }));
    const [info, warn, error] = records(file);
    expect(info).toMatchObject({ level: 'info', name: 'worker-5001', pid: process.pid, msg: 'hello 100% %s', detail: { tenants: 3 } });
    expect(Date.parse(info!.time)).toBeGreaterThan(Date.now() - 60_000);
    expect(warn).toMatchObject({ level: 'warn', errorId: 'abc123', code: 'invalid_item', msg: 'POST /items: bad item' });
    expect(error).toMatchObject({ level: 'error', errorId: id, code: 'storage_unavailable', msg: 'could not persist' });
    expect(error!.err.stack).toContain('caused by: Error: ENOSPC');
  });

  it('drops lines below its level, and changes level at once', () => {
    const file = path.join(tempDir(), 'x.log');
    const log = new Logger('coordinator', file, { level: 'warn' });
    log.debug('d1');
    log.info('i1');
    log.warn('w1');
    log.setLevel('debug');
    log.debug('d2');
    log.setLevel('silent');
    log.error('e1');
    expect(records(file).map((r) => r.msg)).toEqual(['w1', 'd2']);
  });

  it('holds the lines logged before its file is known and writes them there first', () => {
    const file = path.join(tempDir(), 'coordinator.log');
    const log = new Logger('coordinator', undefined, { holdUntilFile: true });
    log.warn('config key `wrokers` is unknown and ignored (check its spelling)');
    log.setFile(file);
    log.info('starting');
    expect(records(file).map((r) => r.msg)).toEqual(['config key `wrokers` is unknown and ignored (check its spelling)', 'starting']);
  });

  it('keeps its log owner-only (it holds ids): creates it 0600 in a 0700 folder, narrows an older 0644 one', () => {
    const folder = path.join(tempDir(), 'logs');
    const file = path.join(folder, 'coordinator.log');
    new Logger('coordinator', file).info('created');
    expect(fs.statSync(folder).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);

    const older = path.join(folder, 'worker-5001.log');
    fs.writeFileSync(older, '');
    fs.chmodSync(older, 0o644);
    const log = new Logger('coordinator', undefined, { holdUntilFile: true });
    log.setFile(older);
    log.info('appended');
    expect(fs.statSync(older).mode & 0o777).toBe(0o600);
    expect(records(older).map((r) => r.msg)).toEqual(['appended']);
  });

  it('loses no line when the process is SIGKILLed right after logging', async () => {
    const file = path.join(tempDir(), 'killed.log');
    const count = 2000;
    const child = spawn(process.execPath, [FIXTURE, file, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, sig) => resolve(sig)));
    expect(signal).toBe('SIGKILL');
    expect(records(file).map((r) => r.detail.i)).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(stdout.split('\n').filter(Boolean)).toHaveLength(count);
  });

  it('is readable on a terminal (pino-pretty) and JSON elsewhere', (ctx) => {
    const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
    if (script.error !== undefined) {
      ctx.skip('`script` (util-linux) is not installed: cannot give the logger a terminal');
      return;
    }
    const file = path.join(tempDir(), 'tty.log');
    const code = `import { Logger } from ${JSON.stringify(path.join(REPO_ROOT, 'dist', 'shared', 'log.js'))}; new Logger('coordinator', ${JSON.stringify(file)}).warn('on a terminal', undefined, 'feedbeef');`;
    const tty = spawnSync('script', ['-qec', `${JSON.stringify(process.execPath)} --input-type=module -e ${JSON.stringify(code)}`, '/dev/null'], { encoding: 'utf8' });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/WARN.*\(coordinator\/\d+\):.*on a terminal/);
    expect(tty.stdout).toContain('feedbeef');
    // The file stays JSON whatever stdout is.
    expect(records(file)[0]).toMatchObject({ level: 'warn', msg: 'on a terminal', errorId: 'feedbeef' });
  });
});
