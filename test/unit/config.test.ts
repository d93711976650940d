import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig, parseConfig, validateConfig, type Config } from '../../shared/config.js';
import { defaultMaxConnections } from '../../shared/open-file-limit.js';

const BASE = '/srv/countapp';

/** The ConfigError `fn` throws; fails the test when it throws nothing or something else. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

function validate(raw: unknown): Config {
  return validateConfig(raw, BASE);
}

const DEFAULTS: Config = {
  port: 5000,
  host: '127.0.0.1',
  workers: [5001, 5002, 5003, 5004].map((port) => ({
    url: `http://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    local: true,
    id: `worker-${port}`,
  })),
  database: path.join(BASE, 'db'),
  worker_logs: path.join(BASE, 'logs'),
  worker_persist: 5,
  worker_publish: 0.5,
  config_check: 5,
  worker_host: null,
  durability: 'fsync',
  forward_timeout: 5,
  forward_deadline: 15,
  health_check: 1,
  kill_timeout: 10,
  lock_stale: 5,
  max_body_bytes: 4 * 1024 * 1024,
  max_batch_items: 10_000,
  max_id_length: 256,
  max_tenant_length: 256,
  coalesce: true,
  max_connections: defaultMaxConnections(),
  store: { kind: 'files' },
  secret_file: null,
  secret_env: null,
  max_count_tenants: 1000,
  count_floor_tenants: 100_000,
  log_level: 'info',
};

describe('defaults', () => {
  it('fills every key when the mapping is empty', () => {
    expect(validate({})).toEqual(DEFAULTS);
  });

  it.each([
    ['an empty file', ''],
    ['a file of comments', '# nothing here\n# at all\n'],
    ['an empty document', '---\n'],
  ])('fills every key for %s', (_what, text) => {
    expect(parseConfig(text, BASE)).toEqual(DEFAULTS);
  });

  it('treats a key written without a value (null) as missing', () => {
    expect(parseConfig('port:\nworker_persist: ~\ndatabase:\n', BASE)).toEqual(DEFAULTS);
  });

  it("accepts the original Go CountApp's config unchanged", () => {
    const text = [
      'port: 5000',
      'workers:',
      '  - http://localhost:5001',
      '  - http://localhost:5002',
      '  - http://localhost:5003',
      '  - http://localhost:5004',
      'database: db/',
      'worker_logs: logs/',
      'worker_persist: 5',
      'config_check: 5',
      '',
    ].join('\n');
    const warn = vi.fn();
    expect(parseConfig(text, BASE, warn)).toEqual(DEFAULTS);
    expect(warn).not.toHaveBeenCalled();
  });
});

describe('scalar keys', () => {
  // [key, good values (with the value they become), bad values]
  const cases: Array<[string, Array<[unknown, unknown]>, unknown[]]> = [
    ['port', [[8080, 8080], [1, 1], [65000, 65000]], ['abc', '5000', 0, -1, 1.5, 65536, 70000, true, [], {}]],
    ['host', [['0.0.0.0', '0.0.0.0'], ['::1', '::1']], ['', '   ', 5, true, ['a']]],
    ['database', [['/var/lib/countapp', '/var/lib/countapp']], ['', '  ', 5, false, ['db']]],
    ['worker_logs', [['/var/log/countapp', '/var/log/countapp']], ['', '  ', 5, false, {}]],
    ['worker_persist', [[1, 1], [0.25, 0.25], [86400, 86400]], ['abc', '5', 0, -1, 86401, true, Number.NaN, Number.POSITIVE_INFINITY]],
    ['worker_publish', [[0, 0], [0.1, 0.1], [2, 2], [86400, 86400]], ['abc', '0.5', -1, 86401, false, Number.NaN, Number.POSITIVE_INFINITY]],
    ['config_check', [[1, 1], [0.5, 0.5]], ['abc', 0, -0.5, 100_000, false]],
    ['worker_host', [['0.0.0.0', '0.0.0.0'], ['127.0.0.1', '127.0.0.1']], ['', '   ', 5, true, []]],
    ['durability', [['fsync', 'fsync'], ['write', 'write'], ['off', 'off']], ['FSYNC', 'sync', 'none', '', 1, true, false]],
    ['forward_timeout', [[1, 1], [0.5, 0.5], [15, 15]], ['abc', 0, -1, true]],
    ['forward_deadline', [[15, 15], [60, 60], [5, 5]], ['abc', 0, -1, true]],
    ['health_check', [[0.5, 0.5], [3600, 3600]], ['abc', 0, -1, 3601, true]],
    ['kill_timeout', [[0.5, 0.5], [3600, 3600]], ['abc', 0, -1, 3601, true]],
    ['lock_stale', [[2, 2], [2.5, 2.5], [3600, 3600]], ['abc', 0, 1, 1.999, -2, 3601, true]],
    ['max_body_bytes', [[64, 64], [1024, 1024], [1024 * 1024 * 1024, 1024 * 1024 * 1024]], ['abc', 0, -1, 63, 1.5, 1024 * 1024 * 1024 + 1, true]],
    ['max_batch_items', [[1, 1], [500, 500], [10_000_000, 10_000_000]], ['abc', 0, -1, 2.5, 10_000_001, true]],
    ['max_id_length', [[1, 1], [65536, 65536]], ['abc', 0, -1, 1.5, 65537, true]],
    ['max_tenant_length', [[1, 1], [4096, 4096]], ['abc', 0, -1, 1.5, 4097, true]],
    ['coalesce', [[true, true], [false, false]], ['yes', 'no', 'true', 1, 0]],
    ['log_level', [['debug', 'debug'], ['warn', 'warn'], ['silent', 'silent']], ['INFO', 'verbose', '', 1, true]],
  ];

  for (const [key, goods, bads] of cases) {
    describe(key, () => {
      it.each(goods.map(([value, becomes]) => ({ value, becomes })))('accepts $value', ({ value, becomes }) => {
        const config = validate({ [key]: value });
        expect(config[key as keyof Config]).toEqual(becomes);
      });

      it.each(bads.map((value) => ({ value })))('rejects $value and names the key', ({ value }) => {
        const err = configError(() => validate({ [key]: value }));
        expect(err.key).toBe(key);
        expect(err.message).toContain(`\`${key}\``);
        expect(err.message).toMatch(/^Expected `[a-z_]+` to be .+, got `.*` \((string|number|boolean|array|object|null)\)$/);
      });
    });
  }

  it('follows the "Expected `key` to be ..., got `value` (type)" shape', () => {
    const err = configError(() => validate({ worker_persist: 'abc' }));
    expect(err.key).toBe('worker_persist');
    expect(err.message).toMatch(/^Expected `worker_persist` to be a number > 0\b.*, got `'abc'` \(string\)$/);
    const integer = configError(() => validate({ max_batch_items: 2.5 }));
    expect(integer.message).toMatch(/^Expected `max_batch_items` to be an integer .*, got `2\.5` \(number\)$/);
  });

  it('shortens a huge offending value in the message', () => {
    const err = configError(() => validate({ port: 'p'.repeat(10_000) }));
    expect(err.key).toBe('port');
    expect(err.message.length).toBeLessThan(200);
  });

  it('reads YAML scalars with their YAML types (a quoted number is a string)', () => {
    expect(parseConfig('port: 6000\nworker_persist: 0.5\ncoalesce: false\n', BASE)).toMatchObject({ port: 6000, worker_persist: 0.5, coalesce: false });
    expect(configError(() => parseConfig('port: "6000"\n', BASE)).key).toBe('port');
    expect(configError(() => parseConfig('worker_persist: .nan\n', BASE)).key).toBe('worker_persist');
    expect(configError(() => parseConfig('worker_persist: .inf\n', BASE)).key).toBe('worker_persist');
    // YAML 1.2: `yes` is a string, not a boolean.
    expect(configError(() => parseConfig('coalesce: yes\n', BASE)).key).toBe('coalesce');
  });
});

describe('forward_deadline and forward_timeout', () => {
  it('rejects a deadline shorter than one attempt', () => {
    const err = configError(() => validate({ forward_timeout: 5, forward_deadline: 3 }));
    expect(err.key).toBe('forward_deadline');
    expect(err.message).toContain('`forward_deadline`');
    expect(err.message).toContain('`forward_timeout`');
  });

  it('rejects a timeout longer than the default deadline', () => {
    expect(configError(() => validate({ forward_timeout: 20 })).key).toBe('forward_deadline');
  });

  it('accepts a deadline equal to the timeout', () => {
    expect(validate({ forward_timeout: 7, forward_deadline: 7 })).toMatchObject({ forward_timeout: 7, forward_deadline: 7 });
  });
});

describe('workers as a number', () => {
  it('means N workers on ports port+1 .. port+N of 127.0.0.1', () => {
    const config = validate({ port: 7000, workers: 3 });
    expect(config.workers).toEqual([7001, 7002, 7003].map((port) => ({
      url: `http://127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      local: true,
      id: `worker-${port}`,
    })));
  });

  it('accepts 0 (a coordinator with no workers yet)', () => {
    expect(validate({ workers: 0 }).workers).toEqual([]);
  });

  it.each([-1, 1.5, 257, Number.NaN])('rejects %s', (value) => {
    const err = configError(() => validate({ workers: value }));
    expect(err.key).toBe('workers');
    expect(err.message).toContain('`workers`');
  });

  it('lets the coordinator use port 65535 when no worker port is derived from it', () => {
    expect(validate({ port: 65535, workers: [] }).port).toBe(65535);
    expect(validate({ port: 65535, workers: ['http://127.0.0.1:5001'] }).port).toBe(65535);
  });

  it('rejects ports past 65535', () => {
    expect(configError(() => validate({ port: 65535, workers: 1 })).key).toBe('workers');
    expect(configError(() => validate({ port: 65530, workers: 6 })).key).toBe('workers');
    expect(validate({ port: 65530, workers: 5 }).workers.at(-1)?.port).toBe(65535);
  });

  it.each([['four'], [{}], [true]])('rejects the non-number, non-list %j', (value) => {
    expect(configError(() => validate({ workers: value })).key).toBe('workers');
  });
});

describe('workers as a list of URLs', () => {
  it('normalises localhost to 127.0.0.1 and marks it local', () => {
    const config = validate({ workers: ['http://localhost:5001', 'http://127.0.0.1:5002/', 'http://LOCALHOST:5003'] });
    expect(config.workers).toEqual([
      { url: 'http://127.0.0.1:5001', host: '127.0.0.1', port: 5001, local: true, id: 'worker-5001' },
      { url: 'http://127.0.0.1:5002', host: '127.0.0.1', port: 5002, local: true, id: 'worker-5002' },
      { url: 'http://127.0.0.1:5003', host: '127.0.0.1', port: 5003, local: true, id: 'worker-5003' },
    ]);
  });

  it.each(['http://[::1]:5001', 'http://[0:0:0:0:0:0:0:1]:5001', 'http://[::1]:5001/'])('takes the IPv6 loopback %s as local', (url) => {
    expect(validate({ workers: [url] }).workers).toEqual([
      { url: 'http://[::1]:5001', host: '::1', port: 5001, local: true, id: 'worker-5001' },
    ]);
  });

  it('marks a remote host as not local', () => {
    const [ip, name] = validate({ workers: ['http://10.0.0.5:6000', 'http://counter.example.com:6001'] }).workers;
    expect(ip).toMatchObject({ url: 'http://10.0.0.5:6000', host: '10.0.0.5', port: 6000, local: false });
    expect(name).toMatchObject({ url: 'http://counter.example.com:6001', host: 'counter.example.com', port: 6001, local: false });
    expect(ip!.id).not.toBe(name!.id);
  });

  it('lets a remote worker use the same port number as the coordinator', () => {
    expect(validate({ port: 5000, workers: ['http://10.0.0.5:5000'] }).workers[0]).toMatchObject({ local: false, port: 5000 });
  });

  it('accepts an empty list', () => {
    expect(validate({ workers: [] }).workers).toEqual([]);
  });

  it.each([
    ['localhost and 127.0.0.1', ['http://localhost:5001', 'http://127.0.0.1:5001']],
    ['the same URL twice', ['http://127.0.0.1:5001', 'http://127.0.0.1:5002', 'http://127.0.0.1:5001']],
    ['with and without a trailing slash', ['http://localhost:5001/', 'http://localhost:5001']],
  ])('rejects duplicates: %s', (_what, workers) => {
    const err = configError(() => validate({ workers }));
    const last = workers.length - 1;
    expect(err.key).toBe(`workers[${last}]`);
    expect(err.message).toContain(`\`workers[${last}]\``);
  });

  it.each(['http://[::ffff:127.0.0.1]:5001', 'http://[::ffff:7f00:1]:5001', 'http://[0:0:0:0:0:ffff:127.0.0.1]:5001'])(
    'takes the IPv4-mapped loopback %s as 127.0.0.1: local (spawned)',
    (url) => {
      expect(validate({ workers: [url] }).workers).toEqual([
        { url: 'http://127.0.0.1:5001', host: '127.0.0.1', port: 5001, local: true, id: 'worker-5001' },
      ]);
    },
  );

  it.each([
    ['a loopback worker', 'http://127.0.0.1:5001', 'http://[::ffff:127.0.0.1]:5001'],
    ['a remote worker', 'http://10.0.0.5:6000', 'http://[::ffff:10.0.0.5]:6000'],
  ])('rejects an IPv4-mapped IPv6 spelling of %s as a repeat', (_what, first, mapped) => {
    const err = configError(() => validate({ workers: [first, 'http://127.0.0.1:5002', mapped] }));
    expect(err.key).toBe('workers[2]');
    expect(err.message).toContain('`workers[2]` repeats `workers[0]`');
  });

  it('keeps a plain IPv6 remote worker as written, and the old IPv4-compatible form as IPv6', () => {
    const [v6, compatible] = validate({ workers: ['http://[2001:db8::1]:6000', 'http://[::10.0.0.5]:6000'] }).workers;
    expect(v6).toMatchObject({ url: 'http://[2001:db8::1]:6000', host: '2001:db8::1', local: false });
    expect(compatible).toMatchObject({ url: 'http://[::a00:5]:6000', host: '::a00:5', local: false });
  });

  it('never gives two local workers the same id (log file, WAL and lock owner)', () => {
    // localhost:5001 and [::1]:5001 are different sockets, but both would be "worker-5001".
    let config: Config | undefined;
    try {
      config = validate({ workers: ['http://localhost:5001', 'http://[::1]:5001'] });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).key).toBe('workers[1]');
      return;
    }
    const ids = config.workers.map((worker) => worker.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.each(['http://127.0.0.1:5000', 'http://localhost:5000', 'http://[::1]:5000'])("rejects a local worker on the coordinator's port: %s", (url) => {
    const err = configError(() => validate({ port: 5000, workers: ['http://127.0.0.1:5001', url] }));
    expect(err.key).toBe('workers[1]');
    expect(err.message).toContain('5000');
  });

  it.each([
    ['https', 'https://localhost:5001'],
    ['ftp', 'ftp://localhost:5001'],
    ['no scheme', 'localhost:5001'],
    ['not a URL', 'not a url'],
    ['empty', ''],
    ['a path', 'http://localhost:5001/api'],
    ['a query', 'http://localhost:5001/?x=1'],
    ['a fragment', 'http://localhost:5001/#top'],
    ['credentials', 'http://user:pw@localhost:5001'],
    ['no port', 'http://localhost'],
    ['a port out of range', 'http://localhost:65536'],
    ['port 0', 'http://localhost:0'],
  ])('rejects a worker URL with %s', (_what, url) => {
    const err = configError(() => validate({ workers: ['http://127.0.0.1:5001', url] }));
    expect(err.key).toBe('workers[1]');
    expect(err.message).toContain('`workers[1]`');
  });

  it.each([[5001], [null], [['http://localhost:5001']]])('rejects the non-string entry %j', (entry) => {
    expect(configError(() => validate({ workers: [entry] })).key).toBe('workers[0]');
  });
});

describe('the document', () => {
  it.each([
    ['an unclosed flow list', 'port: [1, 2\n'],
    ['a tab indentation', 'workers:\n\t- http://localhost:5001\n'],
    ['a duplicate key', 'port: 5000\nport: 5001\n'],
    ['a bad indentation', 'port: 5000\n  worker_persist: 5\n bad: [\n'],
  ])('rejects invalid YAML: %s', (_what, text) => {
    const err = configError(() => parseConfig(text, BASE));
    expect(err.key).toBeUndefined();
    expect(err.message).toMatch(/^The config is not valid YAML: \S/);
    expect(err.message).not.toContain('\n');
  });

  it.each([
    ['a list', '- port: 5000\n'],
    ['a string', 'just some words\n'],
    ['a number', '5000\n'],
    ['a boolean', 'true\n'],
  ])('rejects a top level that is %s', (_what, text) => {
    const err = configError(() => parseConfig(text, BASE));
    expect(err.message).toMatch(/^Expected the config to be a mapping of keys, got /);
  });

  it('warns about an unknown key through the callback and accepts the rest', () => {
    const warn = vi.fn();
    const config = parseConfig('port: 6000\nworker_persits: 3\n', BASE, warn);
    expect(config.port).toBe(6000);
    expect(config.worker_persist).toBe(5);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toContain('worker_persits');
  });

  it('does not need a warn callback for unknown keys', () => {
    expect(validate({ colour: 'blue' }).port).toBe(5000);
  });
});

describe('loadConfig and paths', () => {
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-config-'));
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function write(name: string, text: string): string {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
  }

  it("resolves relative `database` and `worker_logs` against the config file's folder", () => {
    const file = write('conf/cluster.yaml', 'database: data/db/\nworker_logs: ../logs\n');
    const config = loadConfig(file);
    expect(config.database).toBe(path.join(dir, 'conf', 'data', 'db'));
    expect(config.worker_logs).toBe(path.join(dir, 'logs'));
  });

  it("resolves the defaults against the config file's folder too", () => {
    const config = loadConfig(write('c.yaml', 'port: 6000\n'));
    expect(config.database).toBe(path.join(dir, 'db'));
    expect(config.worker_logs).toBe(path.join(dir, 'logs'));
  });

  it('resolves against the file, not the working directory, when the file is named relatively', () => {
    const file = write('sub/c.yaml', 'database: here\n');
    const relative = path.relative(process.cwd(), file);
    expect(path.isAbsolute(relative)).toBe(false);
    expect(loadConfig(relative).database).toBe(path.join(dir, 'sub', 'here'));
  });

  it('keeps absolute paths', () => {
    const config = loadConfig(write('c.yaml', 'database: /var/lib/countapp/db\nworker_logs: /var/log/countapp\n'));
    expect(config.database).toBe('/var/lib/countapp/db');
    expect(config.worker_logs).toBe('/var/log/countapp');
  });

  it('loads an empty file as the defaults', () => {
    const config = loadConfig(write('empty.yaml', ''));
    expect(config).toEqual({ ...DEFAULTS, database: path.join(dir, 'db'), worker_logs: path.join(dir, 'logs') });
  });

  it('passes the warn callback on', () => {
    const warn = vi.fn();
    loadConfig(write('c.yaml', 'mystery: 1\n'), warn);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('mystery'));
  });

  it('throws a ConfigError naming the file when it is missing', () => {
    const missing = path.join(dir, 'nope.yaml');
    const err = configError(() => loadConfig(missing));
    expect(err.key).toBeUndefined();
    expect(err.message).toContain(missing);
    expect(err.message).toContain('ENOENT');
  });

  it('throws a ConfigError when the path is a folder', () => {
    const err = configError(() => loadConfig(dir));
    expect(err.message).toContain(dir);
  });

  it('reports a validation error from a file with the key', () => {
    const err = configError(() => loadConfig(write('c.yaml', 'lock_stale: 1\n')));
    expect(err.key).toBe('lock_stale');
  });
});

describe('workers run by hand: {url, spawn: false}', () => {
  it('a loopback entry with spawn: false is not spawned, and keeps the loopback name', () => {
    const [byHand, spawned, plainObject] = validate({ workers: [{ url: 'http://localhost:5001', spawn: false }, 'http://127.0.0.1:5002', { url: 'http://127.0.0.1:5003' }] }).workers;
    expect(byHand).toEqual({ url: 'http://127.0.0.1:5001', host: '127.0.0.1', port: 5001, local: false, id: 'worker-5001' });
    expect(spawned!.local).toBe(true);
    expect(plainObject).toEqual({ url: 'http://127.0.0.1:5003', host: '127.0.0.1', port: 5003, local: true, id: 'worker-5003' });
  });

  it('a loopback worker run by hand still clashes with a spawned one on its port, and with the coordinator', () => {
    expect(configError(() => validate({ workers: ['http://127.0.0.1:5001', { url: 'http://localhost:5001', spawn: false }] })).message).toMatch(/repeats `workers\[0\]`/);
    expect(configError(() => validate({ port: 5000, workers: [{ url: 'http://127.0.0.1:5000', spawn: false }] })).message).toMatch(/coordinator's own port/);
  });

  it.each([
    [{ url: 'http://127.0.0.1:5001', spawn: 'no' }, /Expected `workers\[0\].spawn` to be true or false/],
    [{ url: 'http://127.0.0.1:5001', host: 'x' }, /`workers\[0\]` has an unknown key `host`/],
    [{ spawn: false }, /Expected `workers\[0\]` to be a URL/],
  ])('refuses the entry %j clearly', (entry, message) => {
    expect(configError(() => validate({ workers: [entry] })).message).toMatch(message);
  });
});

describe('store', () => {
  it('defaults to files', () => {
    expect(validate({}).store).toEqual({ kind: 'files' });
    expect(validate({ store: 'files' }).store).toEqual({ kind: 'files' });
  });

  it('one Redis URL is one node; a list is a Redis Cluster', () => {
    expect(validate({ store: 'redis://10.0.0.9:6379' }).store).toEqual({ kind: 'redis', urls: ['redis://10.0.0.9:6379'], cluster: false });
    expect(validate({ store: 'rediss://:pw@cache.example.com:6380/2' }).store).toMatchObject({ kind: 'redis', cluster: false });
    expect(validate({ store: ['redis://a:7000', 'redis://b:7001'] }).store).toEqual({ kind: 'redis', urls: ['redis://a:7000', 'redis://b:7001'], cluster: true });
  });

  it.each([
    ['redis', /Expected `store` to be a Redis URL/],
    ['http://localhost:6379', /Expected `store` to be a Redis URL/],
    [6379, /Expected `store` to be 'files', a Redis URL/],
    [[], /Expected `store` to be 'files', a Redis URL/],
    [['redis://a:7000', 'nope'], /Expected `store\[1\]` to be a Redis URL/],
  ])('refuses %j, naming the key', (value, message) => {
    const err = configError(() => validate({ store: value }));
    expect(err.message).toMatch(message);
  });
});

describe('secret_file and secret_env', () => {
  it('a secret file is resolved against the config folder; an env var is a name', () => {
    expect(validate({ secret_file: 'secret' }).secret_file).toBe(path.join(BASE, 'secret'));
    expect(validate({ secret_env: 'COUNTAPP_SECRET' }).secret_env).toBe('COUNTAPP_SECRET');
  });

  it('refuses both at once, and empty values', () => {
    expect(configError(() => validate({ secret_file: 's', secret_env: 'S' })).message).toMatch(/one of `secret_file` and `secret_env`, not both/);
    expect(configError(() => validate({ secret_file: '' })).key).toBe('secret_file');
    expect(configError(() => validate({ secret_env: 5 })).key).toBe('secret_env');
  });
});
