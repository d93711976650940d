import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { COORDINATOR_ENTRY } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';

const dirs: string[] = [];
const servers: net.Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs `countapp` to its exit (it must exit by itself: these are start-up failures). */
function countapp(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [COORDINATOR_ENTRY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function configFile(text: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-cli-'));
  dirs.push(dir);
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, text);
  return file;
}

describe('countapp start-up', () => {
  it('prints its usage with --help', async () => {
    const { code, output } = await countapp(['--help']);
    expect(code).toBe(0);
    expect(output).toMatch(/Usage: countapp \[--config PATH\]/);
  });

  it('refuses a config that does not validate, naming the key, without a stack trace', async () => {
    const { code, output } = await countapp(['--config', configFile('port: 5000\nworker_persist: abc\n')]);
    expect(code).toBe(1);
    expect(output).toMatch(/Expected `worker_persist` to be a number > 0.*got `'abc'` \(string\)/);
    expect(output).not.toMatch(/\n\s+at /);
  });

  it('says clearly when the config file is missing or not YAML', async () => {
    expect((await countapp(['--config', '/nonexistent/config.yaml'])).output).toMatch(/cannot read the config file \/nonexistent\/config.yaml \(ENOENT\)/);
    expect((await countapp(['--config', configFile('workers: [unclosed\n')])).output).toMatch(/not valid YAML/);
    expect((await countapp(['--bogus'])).output).toMatch(/unknown argument "--bogus"/);
    const file = configFile('database: config.yaml/db\n'); // a folder inside a file
    expect((await countapp(['--config', file])).output).toMatch(/cannot create `database` folder .*config.yaml\/db \(ENOTDIR\)/);
  });

  it('refuses a config file over 1 MiB before reading it: exit 1, the size named, nothing created', async () => {
    const file = configFile(`port: 5000\nworkers: 1\njunk: "${'x'.repeat(2 * 1024 * 1024)}"\n`);
    const size = statSync(file).size;
    const { code, output } = await countapp(['--config', file]);
    expect(code).toBe(1);
    expect(output).toBe(`countapp: ${file} is 2 MiB (${size} bytes), over the 1 MiB limit for a config file\n`);
    expect(existsSync(path.join(path.dirname(file), 'logs'))).toBe(false);
  });

  it('exits with a clear message when its port is taken, starting no worker', async () => {
    const [port, workerPort] = await freePorts(2, { consecutive: true });
    const squatter = net.createServer().listen(port, '127.0.0.1');
    servers.push(squatter);
    await new Promise((resolve) => squatter.once('listening', resolve));
    const { code, output } = await countapp(['--config', configFile(`port: ${port}\nworkers: [http://127.0.0.1:${workerPort}]\n`)]);
    expect(code).toBe(1);
    expect(output).toMatch(new RegExp(`port ${port} is already in use`));
    expect(output).not.toMatch(/spawned worker/);
  });
});
