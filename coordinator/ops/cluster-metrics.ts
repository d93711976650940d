import { AggregatorRegistry } from 'prom-client';
import { registry } from '../../shared/metrics.js';
import type { WorkerStatus } from '../managed-worker.js';
import { fetchWorkerMetrics } from '../worker-client.js';

/** A worker's metrics are waited for at most this long per scrape (they are scraped in parallel). */
export const WORKER_SCRAPE_TIMEOUT_MS = 2_000;

/** States whose worker has a process answering HTTP (a suspect one may still answer). */
const SCRAPED_STATES: ReadonlySet<string> = new Set(['up', 'suspect']);

interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
}

/**
 * The coordinator's `GET /metrics`: its own metrics and, scraped now and in parallel,
 * every running worker's (`GET /metrics?format=json`; each series carries its `worker`
 * label), merged into one exposition with one HELP/TYPE per metric (prom-client's
 * AggregatorRegistry). `countapp_worker_metrics_scraped{worker}` says whose could be read.
 */
export async function clusterMetrics(format: 'text' | 'json', rows: readonly WorkerStatus[]): Promise<string> {
  const own = (await registry.getMetricsAsJSON()) as unknown as MetricJson[];
  const scraped = await Promise.all(rows.map(async (row) => ({
    row,
    metrics: SCRAPED_STATES.has(row.state) ? await fetchWorkerMetrics(row.url, { timeoutMs: WORKER_SCRAPE_TIMEOUT_MS }) : undefined,
  })));
  const scrapeMetric: MetricJson = {
    name: 'countapp_worker_metrics_scraped',
    help: "Whether this scrape read each worker's metrics (1) or not (0: not running, or no answer in time).",
    type: 'gauge',
    values: scraped.map(({ row, metrics }) => ({ value: metrics === undefined ? 0 : 1, labels: { worker: row.id } })),
  };
  const sources = [own, [scrapeMetric], ...scraped.flatMap(({ metrics }) => (metrics === undefined ? [] : [metrics as MetricJson[]]))];
  // Every series is one process's (the workers' carry their label), so nothing is summed:
  // "first" keeps each as it is, where prom-client's own choice would average or omit some.
  for (const metrics of sources) for (const metric of metrics) metric.aggregator = 'first';
  const merged = AggregatorRegistry.aggregate(sources);
  return format === 'json' ? JSON.stringify(await merged.getMetricsAsJSON()) : merged.metrics();
}
