import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigTooLargeError, MAX_CONFIG_BYTES, PARSE_TIMEOUT_MS, parseConfigText, readConfigFile } from '../../coordinator/config-file.js';
import { ConfigError, parseConfig } from '../../shared/config.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function write(text: string | Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-config-file-'));
  dirs.push(dir);
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, text);
  return file;
}

/** Runs `work` while a 10 ms timer measures the longest the event loop went without a tick. */
async function longestStall<T>(work: () => Promise<T>): Promise<{ result: PromiseSettledResult<T>; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 10);
  try {
    const [result] = await Promise.allSettled([work()]);
    return { result: result!, stallMs: Math.max(stallMs, performance.now() - last) };
  } finally {
    clearInterval(ticker);
  }
}

/** A YAML mapping of `keys` keys under `junk`: cheap to write, slow to parse (the parser is superlinear in keys). */
function manyKeys(keys: number): string {
  let text = 'port: 6000\njunk:\n';
  for (let i = 0; i < keys; i++) text += `  key${i}: ${i}\n`;
  return text;
}

describe('readConfigFile', () => {
  it('pins the limits: 1 MiB of config, 5 s of parsing', () => {
    expect(MAX_CONFIG_BYTES).toBe(1024 * 1024);
    expect(PARSE_TIMEOUT_MS).toBe(5000);
  });

  it('reads a file up to the cap, exactly', async () => {
    expect(await readConfigFile(write('port: 6000\n'))).toBe('port: 6000\n');
    const full = `port: 6000\n#${'x'.repeat(MAX_CONFIG_BYTES - 13)}\n`;
    expect(Buffer.byteLength(full)).toBe(MAX_CONFIG_BYTES);
    expect(await readConfigFile(write(full))).toBe(full);
  });

  it('refuses a file one byte over the cap, with its size', async () => {
    const file = write(Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x23));
    const err = await readConfigFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigTooLargeError);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigTooLargeError).size).toBe(MAX_CONFIG_BYTES + 1);
    expect((err as Error).message).toBe(`${file} is 1 MiB (1048577 bytes), over the 1 MiB limit for a config file`);
  });

  it('checks the size before reading: a 64 GiB (sparse) file is refused at once', async () => {
    const file = write('');
    fs.truncateSync(file, 64 * 1024 ** 3);
    const started = performance.now();
    await expect(readConfigFile(file)).rejects.toThrow(/is 65536 MiB \(68719476736 bytes\), over the 1 MiB limit/);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it("passes the file system's own errors on with their code", async () => {
    await expect(readConfigFile('/nonexistent/config.yaml')).rejects.toMatchObject({ code: 'ENOENT' });
    const dir = path.dirname(write(''));
    await expect(readConfigFile(dir)).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

describe('parseConfigText (YAML parsed on a worker thread)', () => {
  it('gives what parseConfig gives, relative paths resolved against the folder', async () => {
    const text = 'port: 6000\nworkers: 2\ndatabase: data/\nworker_persist: 0.5\n';
    expect(await parseConfigText(text, '/srv/countapp')).toEqual(parseConfig(text, '/srv/countapp'));
  });

  it('says where YAML is broken, and which key is wrong, as parseConfig does', async () => {
    await expect(parseConfigText('workers: [unclosed\n', '/x')).rejects.toThrow(/^The config is not valid YAML: /);
    const err = await parseConfigText('worker_persist: abc\n', '/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ key: 'worker_persist', message: expect.stringMatching(/Expected `worker_persist` to be a number > 0.*'abc'/) });
  });

  it('passes on at most 10 unknown-key warnings, and counts the rest', async () => {
    const warnings: string[] = [];
    const text = Array.from({ length: 25 }, (_, i) => `typo${i}: 1`).join('\n');
    await parseConfigText(text, '/x', (message) => warnings.push(message));
    expect(warnings).toHaveLength(11);
    expect(warnings[0]).toMatch(/`typo0` is unknown/);
    expect(warnings[10]).toBe('... and 15 more warnings like these');
  });

  it('a document too slow to parse is refused after the time limit, and the event loop never stalls meanwhile', async () => {
    // ~870 KB: under the size cap, yet tens of seconds of parsing (see config-file.ts).
    const text = manyKeys(50_000);
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_CONFIG_BYTES);
    const started = performance.now();
    const { result, stallMs } = await longestStall(() => parseConfigText(text, '/x'));
    const elapsed = performance.now() - started;
    expect(result.status).toBe('rejected');
    expect((result as PromiseRejectedResult).reason).toBeInstanceOf(ConfigError);
    expect(String((result as PromiseRejectedResult).reason.message)).toMatch(/took more than 5 s to parse \(\d+(\.\d)? KiB\); simplify it/);
    expect(elapsed).toBeGreaterThanOrEqual(PARSE_TIMEOUT_MS);
    console.log(`slow config: refused after ${(elapsed / 1000).toFixed(1)} s; longest event-loop stall meanwhile ${stallMs.toFixed(0)} ms`);
    expect(stallMs).toBeLessThan(1000);
  }, 30_000);

  it('a big document that parses in time does not stall the event loop either', async () => {
    // A long list (~600 KB): a few hundred ms of parsing, all of it off the event loop; the unknown key's value never comes back.
    const text = `port: 6000\njunk:\n${'  - abcdefghijklmnopqrstuvwxyz\n'.repeat(20_000)}`;
    const warnings: string[] = [];
    const { result, stallMs } = await longestStall(() => parseConfigText(text, '/x', (message) => warnings.push(message)));
    expect(result).toMatchObject({ status: 'fulfilled', value: { port: 6000 } });
    expect(warnings).toEqual(['config key `junk` is unknown and ignored (check its spelling)']);
    console.log(`600 KB config: longest event-loop stall while parsing ${stallMs.toFixed(0)} ms`);
    expect(stallMs).toBeLessThan(1000);
  }, 30_000);
});
