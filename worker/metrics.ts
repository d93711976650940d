import { Counter, Gauge, Histogram } from 'prom-client';
import { FastCounter } from '../shared/fast-metrics.js';
import { registry } from '../shared/metrics.js';

/**
 * A worker's own metrics (besides its HTTP requests and process metrics). Each is updated
 * at one point of the code it measures; the gauges are read when scraped (see
 * `watchWorkerState`). The coordinator's scrape labels them all with the worker's id.
 */

/** Items of acknowledged batches (durable per `durability`), repeats included. Updated per batch: a plain increment. */
export const itemsAccepted = new FastCounter(registry, {
  name: 'countapp_worker_items_accepted_total',
  help: 'Items of the batches this worker acknowledged (repeats included).',
  labelNames: [],
}).cell();

/** Ids this worker wrote into the store that it did not hold yet: distinct items, summed over the workers. */
export const itemsNew = new Counter({
  name: 'countapp_worker_items_new_total',
  help: 'Ids this worker added to the store that were new there (summed over the workers: the distinct items).',
  registers: [registry],
});

const walGroupRecords = new Histogram({
  name: 'countapp_worker_wal_group_records',
  help: 'Records (batches, hand-overs) written to the write-ahead log by one write: the group commit\'s group size.',
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
  registers: [registry],
});

const walSyncSeconds = new Histogram({
  name: 'countapp_worker_wal_fsync_seconds',
  help: 'Time to make one group commit of the write-ahead log durable (durability: fsync): its write to the O_DSYNC segment.',
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [registry],
});

const persistRoundSeconds = new Histogram({
  name: 'countapp_worker_persist_round_seconds',
  help: 'Duration of one persist round (seal the log, hand the ids to the store, checkpoint, drop segments).',
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

const persistedIds = new Counter({
  name: 'countapp_worker_persist_ids_total',
  help: 'Ids persist rounds got into the store (repeats included; not those of failed tenants, which stay pending).',
  registers: [registry],
});

const persistFailedTenants = new Counter({
  name: 'countapp_worker_persist_failed_tenants_total',
  help: 'Tenants a persist round could not persist (their ids stay pending and in the write-ahead log).',
  registers: [registry],
});

/** One group commit of the write-ahead log: its records, and the time it took to become durable (durability: fsync). */
export function observeWalGroup(records: number, durableMs: number | undefined): void {
  walGroupRecords.observe(records);
  if (durableMs !== undefined) walSyncSeconds.observe(durableMs / 1000);
}

/** One persist round, as the persister reports it. */
export function observePersistRound(round: { readonly ms: number; readonly ids: number; readonly failedTenants: number }): void {
  persistRoundSeconds.observe(round.ms / 1000);
  persistedIds.inc(round.ids);
  if (round.failedTenants > 0) persistFailedTenants.inc(round.failedTenants);
}

/** What the gauges read at scrape time. */
export interface WorkerStateSource {
  /** Acknowledged ids not yet handed to the store. */
  readonly pendingIds: () => number;
  /** Bytes of write-ahead log on disk. */
  readonly walBytes: () => number;
  /** When the last persist round ended (epoch ms), if one did. */
  readonly lastPersistAt: () => number | undefined;
}

/** Binds the worker's gauges to its state; called once the worker has it. */
export function watchWorkerState(source: WorkerStateSource): void {
  new Gauge({
    name: 'countapp_worker_pending_ids',
    help: 'Ids acknowledged and not yet handed to the store.',
    registers: [registry],
    collect() {
      this.set(source.pendingIds());
    },
  });
  new Gauge({
    name: 'countapp_worker_wal_bytes',
    help: 'Bytes of write-ahead log on disk (every segment).',
    registers: [registry],
    collect() {
      this.set(source.walBytes());
    },
  });
  new Gauge({
    name: 'countapp_worker_last_persist_timestamp_seconds',
    help: 'When the last persist round ended (Unix time); 0 before the first.',
    registers: [registry],
    collect() {
      this.set((source.lastPersistAt() ?? 0) / 1000);
    },
  });
}
