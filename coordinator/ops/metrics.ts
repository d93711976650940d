import { Counter, Gauge } from 'prom-client';
import { FastCounter, FastHistogram, type CounterCell } from '../../shared/fast-metrics.js';
import { registry } from '../../shared/metrics.js';
import type { WorkerStatus } from '../managed-worker.js';

/**
 * The coordinator's own metrics (besides its HTTP requests and process metrics): what it
 * forwarded where and how that went, the coalescer, and its workers as the supervisor
 * sees them. Per-request ones are plain increments (see shared/fast-metrics.ts); the
 * gauges are read when scraped.
 */

/** Items of the batches the coordinator answered 200 (repeats included). */
export const itemsAccepted = new FastCounter(registry, {
  name: 'countapp_items_accepted_total',
  help: 'Items of the batches the coordinator answered 200 (repeats included).',
  labelNames: [],
}).cell();

/**
 * How one forwarding attempt ended: `answered` (below 500), `error_status` (a 5xx),
 * `not_sent` (no connection: nothing can have been applied), `no_answer` (sent, then a
 * timeout or a reset: it may have been applied).
 */
export type AttemptOutcome = 'answered' | 'error_status' | 'not_sent' | 'no_answer';
const OUTCOMES: readonly AttemptOutcome[] = ['answered', 'error_status', 'not_sent', 'no_answer'];

const attempts = new FastCounter(registry, {
  name: 'countapp_forward_attempts_total',
  help: 'Forwarding attempts, by worker and outcome (answered, error_status, not_sent, no_answer).',
  labelNames: ['worker', 'outcome'],
});
const attemptCells = new Map<string, readonly CounterCell[]>();

const retries = new FastCounter(registry, {
  name: 'countapp_forward_retries_total',
  help: 'Forwarding attempts after the first of their request (another worker, or the same after a pause).',
  labelNames: [],
}).cell();

const failures = new Counter({
  name: 'countapp_forward_failures_total',
  help: 'Requests no worker answered within forward_deadline, by the error the client got (no_worker_available, outcome_unknown).',
  labelNames: ['code'],
  registers: [registry],
});

/** Batches that left the coalescing queue together as one upstream request. */
export const mergedBatches = new FastHistogram(registry, {
  name: 'countapp_coalescer_merged_batches',
  help: 'Client batches sent together in one upstream request when the coalescing queue is drained.',
  labelNames: [],
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
}).cell();

export function countAttempt(worker: string, outcome: AttemptOutcome): void {
  let cells = attemptCells.get(worker);
  if (cells === undefined) {
    cells = OUTCOMES.map((name) => attempts.cell(worker, name));
    attemptCells.set(worker, cells);
  }
  cells[OUTCOMES.indexOf(outcome)]!.value += 1;
}

export function countRetry(): void {
  retries.value += 1;
}

export function countFailure(code: string): void {
  failures.inc({ code });
}

/** Binds the coalescer's queue depth gauge. */
export function watchCoalescer(queued: () => number): void {
  new Gauge({
    name: 'countapp_coalescer_queue_depth',
    help: 'Client batches waiting in the coalescing queue now.',
    registers: [registry],
    collect() {
      this.set(queued());
    },
  });
}

/** Binds the gauges read from the supervisor's rows, and whether the config file on disk was rejected. */
export function watchCluster(rows: () => readonly WorkerStatus[], configRejected: () => boolean): void {
  new Gauge({
    name: 'countapp_worker_up',
    help: 'Whether each worker takes requests now (1) or not (0), as the coordinator sees it.',
    labelNames: ['worker'],
    registers: [registry],
    collect() {
      this.reset();
      for (const row of rows()) this.set({ worker: row.id }, row.state === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'countapp_worker_state',
    help: "Each worker's state (1 for the current one): starting, up, suspect, down, backing-off, stopping, stopped.",
    labelNames: ['worker', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const row of rows()) this.set({ worker: row.id, state: row.state }, 1);
    },
  });
  new Counter({
    name: 'countapp_worker_restarts_total',
    help: 'Times each worker was respawned after dying.',
    labelNames: ['worker'],
    registers: [registry],
    collect() {
      this.reset();
      for (const row of rows()) this.inc({ worker: row.id }, row.restarts);
    },
  });
  new Gauge({
    name: 'countapp_config_rejected',
    help: 'Whether the config file on disk was rejected (1: the last good config stays in force; see GET /status).',
    registers: [registry],
    collect() {
      this.set(configRejected() ? 1 : 0);
    },
  });
}
