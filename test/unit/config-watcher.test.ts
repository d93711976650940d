import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { watch, type FSWatcher } from 'chokidar';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigWatcher, RESTART_KEYS, SETTLE_MS, WATCH_RETRY_FIRST_MS, WATCH_RETRY_MAX_MS, type WatchFactory } from '../../coordinator/config-watcher.js';
import { parseConfig, type Config } from '../../shared/config.js';
import { CaptureLog } from '../helpers/capture-log.js';
import { waitFor } from '../helpers/cluster.js';

const dirs: string[] = [];
const watchers: ConfigWatcher[] = [];

afterEach(async () => {
  for (const watcher of watchers.splice(0)) await watcher.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  readonly watcher: ConfigWatcher;
  readonly file: string;
  readonly log: CaptureLog;
  /** Every config the watcher emitted. */
  readonly emitted: Config[];
  /** Replaces the file the way editors do: write a temp file, rename it over. */
  save(text: string): void;
  waitFor(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
}

/** The base config: `config_check` an hour away, so only the file watch can notice an edit (unless a test says otherwise). */
function yaml(keys: Record<string, string | number> = {}): string {
  const all: Record<string, string | number> = { port: 9, workers: '[http://127.0.0.1:10]', worker_persist: 5, config_check: 3600, ...keys };
  return Object.entries(all).map(([key, value]) => `${key}: ${value}\n`).join('');
}

async function setup(text: string, options: { watch?: WatchFactory } = {}): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-watch-'));
  dirs.push(dir);
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, text);
  const log = new CaptureLog();
  const watcher = new ConfigWatcher({ file, log, initial: parseConfig(text, dir), initialText: text, ...(options.watch === undefined ? {} : { watch: options.watch }) });
  watchers.push(watcher);
  const emitted: Config[] = [];
  watcher.on('config', (config) => emitted.push(config));
  await watcher.start();
  let saves = 0;
  return {
    watcher,
    file,
    log,
    emitted,
    save(next: string) {
      const temp = path.join(dir, `.config.yaml.${++saves}.tmp`);
      fs.writeFileSync(temp, next);
      fs.renameSync(temp, file);
    },
    waitFor: (what, predicate, timeoutMs = 10_000) => waitFor(predicate, timeoutMs, what).catch((err: Error) => {
      throw new Error(`${err.message}\n${log.text()}`);
    }),
  };
}

describe('ConfigWatcher (real files, real chokidar)', () => {
  it('pins its timings: 100 ms to settle a save; a failed watch is made again after 0.5 s, doubling to 10 s', () => {
    expect(SETTLE_MS).toBe(100);
    expect(WATCH_RETRY_FIRST_MS).toBe(500);
    expect(WATCH_RETRY_MAX_MS).toBe(10_000);
    expect(RESTART_KEYS).toEqual(['port', 'host', 'database', 'store', 'secret_file', 'secret_env']);
  });

  it('applies an edit written in place', async () => {
    const t = await setup(yaml());
    fs.writeFileSync(t.file, yaml({ worker_persist: 2 }));
    await t.waitFor('the new config', () => t.emitted.length === 1);
    expect(t.emitted[0]!.worker_persist).toBe(2);
    expect(t.watcher.config.worker_persist).toBe(2);
    expect(t.log.text()).toMatch(/config.yaml reloaded: worker_persist changed/);
  });

  it('applies an edit saved by rename, and one saved as unlink then a late add', async () => {
    const t = await setup(yaml());
    t.save(yaml({ worker_persist: 3 }));
    await t.waitFor('the renamed config', () => t.emitted.length === 1);
    expect(t.emitted[0]!.worker_persist).toBe(3);

    fs.unlinkSync(t.file);
    await sleep(300); // slower than chokidar's atomic window: an unlink, then an add
    fs.writeFileSync(t.file, yaml({ worker_persist: 4 }));
    await t.waitFor('the re-created config', () => t.emitted.length === 2);
    expect(t.emitted[1]!.worker_persist).toBe(4);
    expect(t.log.matching(/config file removed/)).toHaveLength(1);
  });

  it('reports a broken file once, naming the key, keeps the last good config, and applies the fix', async () => {
    const t = await setup(yaml({ config_check: 0.1 })); // re-read every 0.1 s: the report must still be one line
    const good = t.watcher.config;
    t.save(yaml({ config_check: 0.1, worker_persist: 'abc' }));
    await t.waitFor('the rejection', () => t.log.matching(/rejected/).length > 0);
    await sleep(1000);
    expect(t.log.matching(/rejected/)).toEqual([expect.stringMatching(/ERROR config.yaml rejected: Expected `worker_persist` to be a number > 0.*got `'abc'` \(string\); keeping the last good config/)]);
    expect(t.watcher.config).toBe(good);
    expect(t.emitted).toEqual([]);
    // The status route shows why the file is not in force.
    expect(t.watcher.problem?.message).toMatch(/^Expected `worker_persist` to be a number > 0.*got `'abc'` \(string\)$/);

    t.save(yaml({ config_check: 0.1, worker_persist: 1 }));
    await t.waitFor('the fixed config', () => t.emitted.length === 1);
    expect(t.emitted[0]!.worker_persist).toBe(1);
    expect(t.watcher.problem).toBeUndefined();
  });

  it('a file that comes back to the text in force after a rejection has no problem any more', async () => {
    const text = yaml({ config_check: 0.1 });
    const t = await setup(text);
    t.save(`${text}junk: "${'x'.repeat(2 * 1024 * 1024)}"\n`);
    await t.waitFor('the size rejection', () => t.watcher.problem !== undefined);
    expect(t.watcher.problem!.message).toMatch(/over the 1 MiB limit/);
    t.save(text);
    await t.waitFor('the problem cleared', () => t.watcher.problem === undefined);
  });

  it('a deleted file: reported once, the last good config kept; restored, it is read again', async () => {
    const t = await setup(yaml({ config_check: 0.1 }));
    const good = t.watcher.config;
    fs.unlinkSync(t.file);
    await t.waitFor('the report', () => t.log.matching(/config file removed/).length > 0);
    await sleep(1000); // ~10 re-reads of a missing file
    expect(t.log.matching(/config file removed; keeping the last good config/)).toHaveLength(1);
    expect(t.watcher.config).toBe(good);
    expect(t.watcher.problem?.message).toBe('the config file was removed');
    fs.writeFileSync(t.file, yaml({ config_check: 0.1, worker_persist: 7 }));
    await t.waitFor('the restored config', () => t.emitted.length === 1);
    expect(t.emitted[0]!.worker_persist).toBe(7);
  });

  it('restart-only keys: the change is reported and the running values stay', async () => {
    const t = await setup(yaml());
    t.save(yaml({ port: 19, database: 'elsewhere/', store: 'redis://10.0.0.9:6379' }));
    await t.waitFor('the report', () => t.log.matching(/nothing changed that applies without a restart/).length > 0);
    expect(t.log.text()).toMatch(/`port` changed from 9 to 19: restart the coordinator for it to take effect/);
    expect(t.log.text()).toMatch(/`database` changed from .*db" to .*elsewhere": restart the coordinator/);
    expect(t.log.text()).toMatch(/`store` changed from \{"kind":"files"\} to .*redis:\/\/10\.0\.0\.9:6379.*: restart the coordinator/);
    expect(t.emitted).toEqual([]);

    t.save(yaml({ port: 19, database: 'elsewhere/', store: 'redis://10.0.0.9:6379', worker_persist: 2 }));
    await t.waitFor('the new config', () => t.emitted.length === 1);
    expect(t.emitted[0]).toMatchObject({ port: 9, database: path.join(path.dirname(t.file), 'db'), store: { kind: 'files' }, worker_persist: 2 });
  });

  it('refuses a file over the size cap once, with its size, and keeps the last good config', async () => {
    const t = await setup(yaml({ config_check: 0.1 }));
    const good = t.watcher.config;
    const huge = `${yaml({ config_check: 0.1, worker_persist: 1 })}junk: "${'x'.repeat(2 * 1024 * 1024)}"\n`;
    t.save(huge);
    await t.waitFor('the rejection', () => t.log.matching(/rejected/).length > 0);
    await sleep(1000);
    expect(t.log.matching(/rejected/)).toEqual([
      expect.stringMatching(new RegExp(`config.yaml rejected: .*config.yaml is 2 MiB \\(${Buffer.byteLength(huge)} bytes\\), over the 1 MiB limit for a config file; keeping the last good config`)),
    ]);
    expect(t.watcher.config).toBe(good);
    expect(t.emitted).toEqual([]);
  });

  it('makes a failed watcher again (with backoff), and an edit after that is still seen', async () => {
    const made: FSWatcher[] = [];
    let failNext = 0;
    const factory: WatchFactory = (folder, options) => {
      if (failNext > 0) {
        failNext -= 1;
        throw Object.assign(new Error('EMFILE: too many open files, watch'), { code: 'EMFILE' });
      }
      const watcher = watch(folder, options);
      made.push(watcher);
      return watcher;
    };
    const t = await setup(yaml(), { watch: factory });
    expect(made).toHaveLength(1);

    // chokidar reports an error (as it does for EMFILE or ENOSPC); the first re-creation fails too.
    failNext = 1;
    made[0]!.emit('error', Object.assign(new Error('EMFILE: too many open files, watch'), { code: 'EMFILE' }));
    await t.waitFor('a new watcher', () => made.length === 2);
    expect(made[0]!.closed).toBe(true);
    await t.waitFor('the recovery logged', () => t.log.matching(/watching .* again$/).length === 1);
    expect(t.log.matching(/failed/)).toEqual([
      expect.stringMatching(/watching .*config.yaml failed \(the coordinator is out of file descriptors \(EMFILE\).*\); watching it again in 0.5 s, the periodic re-read goes on/),
      expect.stringMatching(/watching .*config.yaml failed \(.*EMFILE.*\); watching it again in 1 s/),
    ]);

    // With config_check an hour away, only the new watcher can see this edit.
    t.save(yaml({ worker_persist: 2 }));
    await t.waitFor('the edit applied', () => t.emitted.length === 1);
    expect(t.emitted[0]!.worker_persist).toBe(2);
  });

  it('keeps re-reading every config_check while the file cannot be watched at all', async () => {
    const factory: WatchFactory = () => {
      throw Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
    };
    const t = await setup(yaml({ config_check: 0.2 }), { watch: factory });
    t.save(yaml({ config_check: 0.2, worker_persist: 2 }));
    await t.waitFor('the edit applied by the re-read', () => t.emitted.length === 1);
    expect(t.log.text()).toMatch(/watching .* failed \(ENOSPC: System limit/);
  });
});
