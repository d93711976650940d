import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { postCommand } from '../../coordinator/cli/post-command.js';
import { COORDINATOR_ENTRY, REPO_ROOT, startCluster, stopAllClusters, waitFor, type Cluster } from '../helpers/cluster.js';
import { freePorts } from '../helpers/ports.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

/**
 * The `countapp` commands besides running a cluster — status, count, post, worker, --help,
 * --version — as a user runs them: the built bin, against real clusters.
 */

const dirs: string[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) server.close();
  for (const dir of dirs.splice(0)) removeTempDir(dir);
  await stopAllClusters();
});

function tempDir(): string {
  const dir = makeTempDir('countapp-cli-');
  dirs.push(dir);
  return dir;
}

/** Runs the built `countapp` to its exit, with `input` on its stdin. */
function countapp(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [COORDINATOR_ENTRY, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/**
 * A web server that is not CountApp, answering every request with `status` and an HTML
 * page like Python's http.server (GET: 404, POST: 501 unless `status` says otherwise).
 */
async function foreignServer(status?: number): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    const code = status ?? (req.method === 'POST' ? 501 : 404);
    res.writeHead(code, { 'content-type': 'text/html;charset=utf-8' });
    res.end([
      '<!DOCTYPE HTML>', '<html lang="en">', '    <head>', '        <meta charset="utf-8">', '        <title>Error response</title>', '    </head>', '    <body>',
      '        <h1>Error response</h1>', `        <p>Error code: ${code}</p>`, `        <p>Message: Unsupported method ('${req.method}').</p>`,
      '        <p>Error code explanation: the server does not support this operation.</p>', '    </body>', '</html>', '',
    ].join('\n'));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** Polls until the coordinator counts `expected` for every tenant. */
async function converged(cluster: Cluster, expected: Record<string, number>): Promise<void> {
  await waitFor(async () => {
    for (const [tenant, n] of Object.entries(expected)) if ((await cluster.count(tenant)) !== n) return false;
    return true;
  }, 20_000, `the counts ${JSON.stringify(expected)}`);
}

describe('countapp --help, --version, and mistakes', () => {
  it('lists every command, prints the version, and refuses a wrong command line with exit 2', async () => {
    const help = await countapp(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['run', 'status', 'count', 'post', 'worker']) expect(help.stdout).toContain(`countapp ${command}`);
    const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(COORDINATOR_ENTRY), '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect(await countapp(['--version'])).toMatchObject({ code: 0, stdout: `countapp ${pkg.version}\n` });
    expect(await countapp(['status', '--url', 'not a url'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--url must be a URL/) });
    expect(await countapp(['count'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/count needs at least one TENANT/) });
    expect(await countapp(['post', 'a', 'b'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/post needs one FILE/) });
    expect(await countapp(['post', '--batch', '0', 'a'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--batch must be a whole number/) });
    expect(await countapp(['status', '--bogus'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/unknown argument "--bogus"/) });
  });

  it('--help gives the worker command as the README does, --host included', async () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const workerLine = /^- `(worker --config [^`]+)`/m.exec(readme)?.[1];
    expect(workerLine).toBe('worker --config PATH --port N [--host ADDR]');
    expect((await countapp(['--help'])).stdout).toContain(`       countapp ${workerLine}\n`);
  });

  it('makes every command-line mistake one `countapp: ...` line and exit 2, whatever the command', async () => {
    const mistakes = [
      ['stray'], ['--bogus'], ['--config'], ['run', 'extra'],
      ['status', '--bogus'], ['status', '--url'], ['status', 'extra'], ['status', '--json=yes'],
      ['count'], ['count', '--bogus', 't'], ['count', '--url'],
      ['post'], ['post', '--concurrency', '-1', '-'], ['post', '-j', '-1', '-'], ['post', '--batch'], ['post', '--batch', '0', 'f'],
      ['worker'], ['worker', '--config', 'config.yaml'], ['worker', '--config', 'config.yaml', '--port', 'x'], ['worker', '--config', 'config.yaml', '--port', '5001', '--bogus'],
    ];
    const results = await Promise.all(mistakes.map((argv) => countapp(argv)));
    results.forEach((result, i) => {
      expect({ argv: mistakes[i], ...result }).toMatchObject({ argv: mistakes[i], code: 2, stdout: '', stderr: expect.stringMatching(/^countapp: [^\n]+ \(countapp --help says how\)\n$/) });
    });
    // The two the tester met: the worker's usage block with exit 1, and parseArgs's three lines.
    expect(results[17]!.stderr).toBe('countapp: worker needs --config PATH and --port N (countapp --help says how)\n');
    expect(results[12]!.stderr).toBe('countapp: --concurrency needs a value: to give one that starts with a dash, write --concurrency=-1 (countapp --help says how)\n');
    expect(results[0]!.stderr).toBe('countapp: unknown command "stray": the commands are run, status, count, post, worker (countapp --help says how)\n');
  });

  it('says where it could not reach the coordinator, and why a worker run by hand cannot start', async () => {
    const [port] = await freePorts(1);
    const unreachable = await countapp(['status', '--url', `http://127.0.0.1:${port}`]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(new RegExp(`cannot reach the coordinator at http://127.0.0.1:${port} \\(ECONNREFUSED\\): is it running\\?`));
    const worker = await countapp(['worker', '--config', 'x.yaml', '--port', '5001']);
    expect(worker).toMatchObject({ code: 1, stderr: expect.stringMatching(/countapp worker: Cannot read the config file .*x\.yaml \(ENOENT\)/) });
  });

  it('`countapp run --config PATH` starts a cluster like `countapp --config PATH`', async () => {
    const [port, workerPort] = await freePorts(2, { consecutive: true });
    const squatter = net.createServer().listen(port, '127.0.0.1');
    servers.push(squatter);
    await new Promise((resolve) => squatter.once('listening', resolve));
    const file = path.join(tempDir(), 'config.yaml');
    fs.writeFileSync(file, `port: ${port}\nworkers: [http://127.0.0.1:${workerPort}]\n`);
    const answer = await countapp(['run', '--config', file]);
    expect(answer.code).toBe(1);
    expect(answer.stderr).toMatch(new RegExp(`port ${port} is already in use`));
  });
});

describe('countapp status', () => {
  it('prints the workers as a table (from --config or --url), --json the whole status; exit 0 when ready, 3 when not', async () => {
    const cluster = await startCluster({ workers: 2 });
    const pids = await cluster.workerPids();
    const byConfig = await countapp(['status', '--config', cluster.configFile]);
    console.log(`[countapp status]\n${byConfig.stdout}`);
    expect(byConfig.code).toBe(0);
    const lines = byConfig.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^CountApp \\d+\\.\\d+\\.\\d+ · coordinator ${cluster.url} \\(pid ${cluster.pid}, up \\d+s\\) · ready · 2 of 2 workers up$`));
    expect(lines[2]).toMatch(/^┌─+┬/);
    expect(lines[3]).toMatch(/│ worker +│ url +│ state +│ pid +│ uptime +│ restarts +│ pending +│ tenants +│ wal +│ last persist +│ last exit +│/);
    cluster.workerUrls.forEach((url, i) => {
      const row = lines.find((line) => line.includes(url))!;
      expect(row).toMatch(new RegExp(`│ worker-${new URL(url).port} +│ ${url} +│ up +│ +${pids[i]} │`));
    });
    const byUrl = await countapp(['status', '--url', cluster.url]);
    expect(byUrl.code).toBe(0);
    for (const pid of pids) expect(byUrl.stdout).toMatch(new RegExp(`│ up +│ +${pid} │`));

    const json = await countapp(['status', '--url', cluster.url, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ready: true, workers: [{ pid: pids[0] }, { pid: pids[1] }] });

    const empty = await startCluster({ workers: 0 });
    const notReady = await countapp(['status', '--url', empty.url]);
    expect(notReady.code).toBe(3);
    expect(notReady.stdout).toContain('not ready: the config lists no workers · 0 of 0 workers up');
  });
});

describe('countapp count and post', () => {
  it('posts JSON Lines in batches (splitting what the server finds too large), reports bad lines by number, and counts what it stored', async () => {
    const cluster = await startCluster({ workers: 2, config: { max_batch_items: 300 } });
    const dir = tempDir();
    const file = path.join(dir, 'items.jsonl');
    const lines: string[] = [];
    for (let i = 0; i < 2000; i++) lines.push(JSON.stringify({ id: `id-${i % 1500}`, tenant: `tenant-${i % 4}` }));
    lines.splice(100, 0, '{not json');
    lines.splice(1000, 0, JSON.stringify({ id: '', tenant: 'tenant-0' }));
    lines.splice(1500, 0, JSON.stringify([{ id: 'in-array-1', tenant: 'tenant-9' }, { id: 'in-array-2', tenant: 'tenant-9' }]));
    fs.writeFileSync(file, `${lines.join('\n')}\n`);

    const posted = await countapp(['post', '--config', cluster.configFile, '--batch', '500', '--concurrency', '3', file]);
    expect(posted.code).toBe(1);
    expect(posted.stderr).toContain('countapp post: line 101 skipped: not JSON');
    expect(posted.stderr).toContain('countapp post: line 1001 refused: `id` must not be empty.');
    expect(posted.stdout).toMatch(/^posted 2,003 items from .*items\.jsonl in 5 batches, [\d.]+ s \([\d,]+ items\/s\): 2,002 stored, 1 refused, 0 not stored, 1 skipped\n$/);

    // Distinct ids per tenant: id-(i % 1500) for i ≡ t (mod 4).
    const expected: Record<string, number> = { 'tenant-9': 2 };
    for (let t = 0; t < 4; t++) expected[`tenant-${t}`] = new Set(Array.from({ length: 2000 }, (_, i) => i).filter((i) => i % 4 === t).map((i) => i % 1500)).size;
    await converged(cluster, expected);
    const counted = await countapp(['count', '--url', cluster.url, 'tenant-0', 'tenant-9', 'nobody']);
    expect(counted).toMatchObject({ code: 0, stdout: `tenant-0\t${expected['tenant-0']}\ntenant-9\t2\nnobody\t0\n` });
    expect(JSON.parse((await countapp(['count', '--url', cluster.url, '--json', 'tenant-1'])).stdout)).toEqual({ 'tenant-1': expected['tenant-1'] });
    const tooLong = await countapp(['count', '--url', cluster.url, 'tenant-1', 'x'.repeat(300)]);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stdout).toBe(`tenant-1\t${expected['tenant-1']}\n`);
    expect(tooLong.stderr).toMatch(/400 invalid_tenant: .*\(log id [0-9a-f]{12}\)/);
  });

  it('counts every tenant given, in that order, `__proto__` and numeric-looking names too (text and --json)', async () => {
    const cluster = await startCluster({ workers: 1 });
    const tenants = ['__proto__', 't1', 'zeta', '10', '2', 'alpha'];
    // Tenant i has i + 1 distinct ids.
    const items = tenants.flatMap((tenant, i) => Array.from({ length: i + 1 }, (_, j) => JSON.stringify({ id: `${j}`, tenant })));
    const posted = await countapp(['post', '--url', cluster.url, '-'], items.join('\n'));
    expect(posted).toMatchObject({ code: 0, stdout: expect.stringMatching(/^posted 21 items from standard input in 1 batch, .*: 21 stored, 0 refused, 0 not stored, 0 skipped\n$/) });
    await converged(cluster, Object.fromEntries(tenants.map((tenant, i) => [tenant, i + 1])));

    expect(await countapp(['count', '--url', cluster.url, '__proto__', 't1'])).toMatchObject({ code: 0, stdout: '__proto__\t1\nt1\t2\n', stderr: '' });
    const json = await countapp(['count', '--url', cluster.url, '--json', '__proto__', 't1']);
    expect(json).toMatchObject({ code: 0, stdout: '{"__proto__":1,"t1":2}\n' });
    expect(Object.hasOwn(JSON.parse(json.stdout) as object, '__proto__')).toBe(true);
    expect(await countapp(['count', '--url', cluster.url, 'zeta', '10', '2', 'alpha'])).toMatchObject({ code: 0, stdout: 'zeta\t3\n10\t4\n2\t5\nalpha\t6\n' });
    expect(await countapp(['count', '--url', cluster.url, '--json', 'zeta', '10', '2', 'alpha'])).toMatchObject({ code: 0, stdout: '{"zeta":3,"10":4,"2":5,"alpha":6}\n' });
    // A tenant given twice is counted once.
    expect(await countapp(['count', '--url', cluster.url, 't1', 'zeta', 't1'])).toMatchObject({ code: 0, stdout: 't1\t2\nzeta\t3\n' });
  });

  it('posts one JSON array from standard input', async () => {
    const cluster = await startCluster({ workers: 1 });
    const items = Array.from({ length: 1234 }, (_, i) => ({ id: `a-${i}`, tenant: 'from-stdin' }));
    const posted = await countapp(['post', '--url', cluster.url, '-'], JSON.stringify(items, null, 2));
    expect(posted.code).toBe(0);
    expect(posted.stdout).toMatch(/^posted 1,234 items from standard input in 2 batches, .*: 1,234 stored, 0 refused, 0 not stored, 0 skipped\n$/);
    await converged(cluster, { 'from-stdin': 1234 });
  });

  it('writes a progress line while it posts, retries a cluster that cannot take the items, and says what was not stored', async () => {
    const empty = await startCluster({ workers: 0 });
    const errors: string[] = [];
    const out: string[] = [];
    const input = Readable.from([Buffer.from(Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: `${i}`, tenant: 't' })).join('\n'))], { objectMode: false });
    const code = await postCommand(empty.url, '-', { batch: 10, concurrency: 2, out: (t) => out.push(t), err: (t) => errors.push(t), tty: false, stdin: input, progressMs: 20, firstRetryMs: 10 });
    expect(code).toBe(1);
    expect(errors.some((line) => /^\d+ items read, 0 stored · 0 items\/s · 0 refused · \d+ failed\n$/.test(line))).toBe(true);
    expect(errors.filter((line) => /item\(s\) \(line \d+ to line \d+\) not stored after 6 attempts: 503 no_worker_available/.test(line))).toHaveLength(3);
    expect(out.join('')).toMatch(/: 0 stored, 0 refused, 30 not stored, 0 skipped\n$/);
  });
});

describe('countapp against a server that is not CountApp', () => {
  /** `countapp<prefix>` and the page's start, on one line: not the whole page. */
  const FOREIGN = (prefix: string, status: number): RegExp => new RegExp(`^countapp${prefix}HTTP ${status}, not an answer of a CountApp coordinator: <!DOCTYPE HTML> <html lang="en"> <head> <meta charset="utf-8"> <title>Error response</title> [^\\n]{20,200}…\\n$`);

  it('status, count and post say so in one line, and post counts the items as not stored', async () => {
    const url = await foreignServer();
    const status = await countapp(['status', '--url', url]);
    expect(status).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(FOREIGN(` status: GET ${url}/status answered `, 404)) });
    const counted = await countapp(['count', '--url', url, 't1']);
    expect(counted).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(FOREIGN(': count of "t1": ', 404)) });
    const posted = await countapp(['post', '--url', url, '-'], '{"id":"1","tenant":"t"}\n{"id":"2","tenant":"t"}\n');
    expect(posted).toMatchObject({
      code: 1,
      stdout: expect.stringMatching(/^posted 2 items from standard input in 1 batch, .*: 0 stored, 0 refused, 2 not stored, 0 skipped\n$/),
      stderr: expect.stringMatching(FOREIGN(' post: 2 item\\(s\\) \\(line 1 to line 2\\) not stored: ', 501)),
    });
  });

  it('takes a 200 that is not CountApp\'s answer for none: no status drawn, nothing counted as stored', async () => {
    const url = await foreignServer(200);
    expect(await countapp(['status', '--url', url])).toMatchObject({ code: 1, stderr: expect.stringMatching(FOREIGN(` status: GET ${url}/status answered `, 200)) });
    expect(await countapp(['count', '--url', url, 't1'])).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(FOREIGN(': count of "t1": ', 200)) });
    const posted = await countapp(['post', '--url', url, '-'], '{"id":"1","tenant":"t"}\n');
    expect(posted).toMatchObject({ code: 1, stdout: expect.stringMatching(/: 0 stored, 0 refused, 1 not stored, 0 skipped\n$/), stderr: expect.stringMatching(FOREIGN(' post: 1 item\\(s\\) \\(line 1\\) not stored: ', 200)) });
  });
});
