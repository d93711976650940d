import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { FileSystemSync } from '../../worker/fsync.js';
import { isAlive } from '../helpers/proc.js';
import { REPO_ROOT } from '../helpers/repo.js';
import { TempDirs } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait.js';

const temp = new TempDirs();
const opened: FileSystemSync[] = [];
afterEach(() => {
  for (const syncer of opened.splice(0)) syncer.close();
  temp.removeAll();
});

function syncerOf(folder: string): FileSystemSync {
  const syncer = new FileSystemSync(folder);
  opened.push(syncer);
  return syncer;
}

describe('FileSystemSync (syncfs through one long-lived shell)', () => {
  it('answers every sync from the same helper process, several at once too', async () => {
    const syncer = syncerOf(temp.make('countapp-fsync-'));
    expect(syncer.helperPid).toBeUndefined();
    await syncer.sync();
    const pid = syncer.helperPid!;
    expect(isAlive(pid)).toBe(true);
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toBe('sh');
    await Promise.all([syncer.sync(), syncer.sync(), syncer.sync()]);
    expect(syncer.helperPid).toBe(pid);
  });

  it("rejects with sync's own complaint when the folder is gone, and keeps answering", async () => {
    const folder = path.join(temp.make('countapp-fsync-'), 'db');
    fs.mkdirSync(folder);
    const syncer = syncerOf(folder);
    await syncer.sync();
    fs.rmdirSync(folder);
    await expect(syncer.sync()).rejects.toThrow(/sync --file-system .*db failed: .*No such file or directory/);
    fs.mkdirSync(folder);
    await syncer.sync();
  });

  it('a helper that was killed fails the syncs it owed, and the next sync starts another', async () => {
    const syncer = syncerOf(temp.make('countapp-fsync-'));
    await syncer.sync();
    const first = syncer.helperPid!;
    const owed = syncer.sync();
    process.kill(first, 'SIGKILL');
    // Either answered before the signal landed, or failed by it: never left hanging.
    await owed.catch((err: Error) => expect(err.message).toMatch(/its shell ended \(SIGKILL\)/));
    await waitFor(() => !isAlive(first), 5_000, 'the killed helper gone');
    await syncer.sync();
    expect(syncer.helperPid).not.toBe(first);
  });

  it('close() ends the helper', async () => {
    const syncer = syncerOf(temp.make('countapp-fsync-'));
    await syncer.sync();
    const pid = syncer.helperPid!;
    syncer.close();
    await waitFor(() => !isAlive(pid), 5_000, 'the helper gone after close()');
  });

  it('a process waiting on a sync lives until the answer; an idle helper neither keeps it alive nor outlives it', async () => {
    const folder = temp.make('countapp-fsync-');
    const module = pathToFileURL(path.join(REPO_ROOT, 'dist', 'worker', 'fsync.js')).href;
    // Nothing but the sync keeps this process alive; it ends on its own once answered.
    const script = `import { FileSystemSync } from ${JSON.stringify(module)}; const s = new FileSystemSync(${JSON.stringify(folder)}); await s.sync(); console.log(s.helperPid);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 });
    const helper = Number(stdout.trim());
    expect(helper).toBeGreaterThan(0);
    await waitFor(() => !isAlive(helper), 5_000, 'the helper gone with its process');
  });
});
