import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../coordinator/cli/command-line.js';
import { renderTable } from '../../coordinator/cli/table.js';
import { UsageError } from '../../coordinator/cli/usage-error.js';
import { History, bucketQuantile } from '../../coordinator/ops/history.js';
import { FastCounter, FastHistogram, HistogramCell } from '../../shared/fast-metrics.js';
import { LATENCY_BUCKETS } from '../../shared/metrics.js';

describe('FastCounter and FastHistogram', () => {
  it('are read by prom-client like its own metrics (text format)', async () => {
    const registry = new Registry();
    const counter = new FastCounter(registry, { name: 'x_total', help: 'X.', labelNames: ['route', 'status'] });
    const histogram = new FastHistogram(registry, { name: 'y_seconds', help: 'Y.', labelNames: ['route'], buckets: [0.1, 1] });
    counter.cell('ingest', '200').value += 3;
    counter.cell('ingest', '200').value += 1;
    counter.cell('count', '404').value += 1;
    const cell = histogram.cell('ingest');
    for (const v of [0.05, 0.1, 0.5, 2]) cell.observe(v);
    histogram.cell('never');
    expect(await registry.metrics()).toBe([
      '# HELP x_total X.',
      '# TYPE x_total counter',
      'x_total{route="ingest",status="200"} 4',
      'x_total{route="count",status="404"} 1',
      '',
      '# HELP y_seconds Y.',
      '# TYPE y_seconds histogram',
      'y_seconds_bucket{route="ingest",le="0.1"} 2',
      'y_seconds_bucket{route="ingest",le="1"} 3',
      'y_seconds_bucket{route="ingest",le="+Inf"} 4',
      'y_seconds_sum{route="ingest"} 2.65',
      'y_seconds_count{route="ingest"} 4',
    ].join('\n') + '\n');
    expect(() => counter.cell('only-one')).toThrow(/expected 2 label value/);
  });
});

describe('bucketQuantile', () => {
  const bounds = [1, 2, 4];
  it('interpolates inside the bucket the rank falls in, like histogram_quantile', () => {
    expect(bucketQuantile(bounds, [0, 10, 0, 0], 0.5)).toBeCloseTo(1.5);
    expect(bucketQuantile(bounds, [10, 0, 10, 0], 0.75)).toBeCloseTo(3);
    expect(bucketQuantile(bounds, [0, 0, 0, 5], 0.99)).toBe(4);
    expect(bucketQuantile(bounds, [0, 0, 0, 0], 0.5)).toBeUndefined();
  });
});

describe('History', () => {
  it('turns counter deltas into items/s and count percentiles per interval', async () => {
    let items = 0;
    const cell = new HistogramCell(LATENCY_BUCKETS);
    const history = new History({ itemsAccepted: () => items, countLatency: () => [cell], intervalMs: 100_000, keep: 2 });
    history.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    items += 100;
    for (let i = 0; i < 99; i++) cell.observe(0.0007);
    cell.observe(0.2);
    history.sample();
    const [point] = history.points();
    expect(point!.itemsPerSecond).toBeGreaterThan(100 / 0.5);
    expect(point!.countP50Ms).toBeGreaterThan(0.5);
    expect(point!.countP50Ms).toBeLessThanOrEqual(1);
    expect(point!.countP99Ms).toBeLessThanOrEqual(1);
    // Samples in the same millisecond are no interval at all: a few ms apart.
    await new Promise((resolve) => setTimeout(resolve, 5));
    history.sample();
    await new Promise((resolve) => setTimeout(resolve, 5));
    history.sample();
    expect(history.points()).toHaveLength(2);
    expect(history.points()[1]!.countP50Ms).toBeNull();
    await history.close();
  });
});

describe('parseCommandLine', () => {
  it('runs a cluster by default or with run, and reads every command', () => {
    expect(parseCommandLine([])).toMatchObject({ kind: 'run', configFile: expect.stringMatching(/config\.yaml$/) });
    expect(parseCommandLine(['--config', '/etc/c.yaml'])).toEqual({ kind: 'run', configFile: '/etc/c.yaml' });
    expect(parseCommandLine(['run', '-c', '/etc/c.yaml'])).toEqual({ kind: 'run', configFile: '/etc/c.yaml' });
    expect(parseCommandLine(['status', '--url', 'http://h:5000/'])).toEqual({ kind: 'status', target: { url: 'http://h:5000' }, json: false });
    expect(parseCommandLine(['count', '--json', 'a', 'b'])).toMatchObject({ kind: 'count', json: true, tenants: ['a', 'b'], target: { explicit: false } });
    expect(parseCommandLine(['post', '-b', '50', '-j', '2', '-'])).toMatchObject({ kind: 'post', file: '-', batch: 50, concurrency: 2 });
    expect(parseCommandLine(['worker', '--config', 'x', '--port', '7'])).toEqual({ kind: 'worker', argv: ['--config', 'x', '--port', '7'] });
    expect(parseCommandLine(['worker', '-c', 'x', '-p', '7', '--host', '10.0.0.2'])).toEqual({ kind: 'worker', argv: ['-c', 'x', '-p', '7', '--host', '10.0.0.2'] });
    // The worker's own usage says more about its options than countapp --help.
    expect(parseCommandLine(['worker', '--help'])).toEqual({ kind: 'worker', argv: ['--help'] });
    expect(parseCommandLine(['status', '--version'])).toEqual({ kind: 'version' });
  });

  it.each([
    [['--bogus'], /unknown argument "--bogus"/],
    [['--config'], /^--config needs a value$/],
    [['status', '--url', 'http://a', '--config', 'b'], /--url or --config, not both/],
    [['status', '--url', 'ftp://a'], /an http:\/\/ URL/],
    [['post'], /post needs one FILE/],
    [['post', '--concurrency', '1.5', 'f'], /--concurrency must be a whole number from 1 to 256/],
    [['stray'], /^unknown command "stray": the commands are run, status, count, post, worker$/],
    [['run', 'stray'], /^unknown argument "stray"$/],
    // parseArgs's own message for these is three lines long.
    [['post', '--concurrency', '-1', '-'], /^--concurrency needs a value: to give one that starts with a dash, write --concurrency=-1$/],
    [['post', '-j', '-1', '-'], /^--concurrency needs a value: to give one that starts with a dash, write --concurrency=-1$/],
    [['post', '--concurrency=-1', '-'], /^--concurrency must be a whole number from 1 to 256, got "-1"$/],
    [['post', '--batch', '--json', 'f'], /^--batch needs a value$/],
    [['count', '--url'], /^--url needs a value$/],
    [['status', '--json=yes'], /^--json takes no value$/],
    // The worker's command line is checked like the others', not by the worker as it starts.
    [['worker', '--config', 'config.yaml'], /^worker needs --config PATH and --port N$/],
    [['worker', '--port', '5001'], /^worker needs --config PATH and --port N$/],
    [['worker', '--config', 'c.yaml', '--port', 'x'], /^--port must be a whole number from 1 to 65535, got "x"$/],
    [['worker', '--config', 'c.yaml', '--port', '5001', '--bogus'], /^unknown argument "--bogus"$/],
    [['worker', '--config', 'c.yaml', '--port'], /^--port needs a value$/],
  ])('refuses %j in one line', (argv, message) => {
    expect(() => parseCommandLine(argv)).toThrow(UsageError);
    expect(() => parseCommandLine(argv)).toThrow(message);
  });
});

describe('renderTable', () => {
  it('draws a box table with aligned columns, colors only when asked', () => {
    const rows = [['worker-5001', { text: 'up', color: 32 }, { text: '7', align: 'right' as const }]];
    expect(renderTable(['worker', 'state', 'pid'], rows, { color: false })).toBe([
      '┌─────────────┬───────┬─────┐',
      '│ worker      │ state │ pid │',
      '├─────────────┼───────┼─────┤',
      '│ worker-5001 │ up    │   7 │',
      '└─────────────┴───────┴─────┘',
    ].join('\n'));
    expect(renderTable(['worker', 'state', 'pid'], rows, { color: true })).toContain('\u001b[32mup   \u001b[0m');
  });
});
