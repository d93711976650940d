import type { HistogramCell } from '../../shared/fast-metrics.js';
import { LATENCY_BUCKETS } from '../../shared/metrics.js';

/** One interval of the recent past. */
export interface HistoryPoint {
  /** Epoch ms at the end of the interval. */
  readonly t: number;
  readonly itemsPerSecond: number;
  /** Count latency percentiles over the interval, ms; null when no count was answered. */
  readonly countP50Ms: number | null;
  readonly countP99Ms: number | null;
}

export interface HistoryOptions {
  /** Items accepted so far (a counter). */
  readonly itemsAccepted: () => number;
  /** The latency histograms of the count routes (their buckets are LATENCY_BUCKETS). */
  readonly countLatency: () => readonly HistogramCell[];
  /** @default 2000 */
  readonly intervalMs?: number;
  /** Points kept. @default 300 (10 minutes at 2 s) */
  readonly keep?: number;
}

/**
 * The q-quantile of observations spread over buckets (`counts[i]` in (bounds[i-1],
 * bounds[i]], the last one above every bound), interpolated linearly inside its bucket as
 * Prometheus's histogram_quantile does; the top bucket answers its lower bound.
 */
export function bucketQuantile(bounds: readonly number[], counts: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i]!;
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const inBucket = counts[i]!;
    if (seen + inBucket >= rank && inBucket > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return lower + (bounds[i]! - lower) * ((rank - seen) / inBucket);
    }
    seen += inBucket;
  }
  return bounds[bounds.length - 1];
}

/**
 * Items/s and count latency over the last minutes, sampled every `intervalMs` from the
 * coordinator's own counters: what the dashboard draws (in `GET /status`), so a page
 * opened now shows the minutes before it too.
 */
export class History {
  readonly #options: HistoryOptions;
  readonly #intervalMs: number;
  readonly #keep: number;
  readonly #points: HistoryPoint[] = [];
  #timer: NodeJS.Timeout | undefined;
  #last: { at: number; items: number; counts: Float64Array } | undefined;

  constructor(options: HistoryOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? 2000;
    this.#keep = options.keep ?? 300;
  }

  get intervalSeconds(): number {
    return this.#intervalMs / 1000;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#last = this.#read();
    this.#timer = setInterval(() => this.sample(), this.#intervalMs);
    // The HTTP server keeps the coordinator alive; the samples alone should not.
    this.#timer.unref();
  }

  /** Takes one point now (the timer calls it; tests too). */
  sample(): void {
    const now = this.#read();
    const last = this.#last ?? now;
    this.#last = now;
    const seconds = (now.at - last.at) / 1000;
    if (seconds <= 0) return;
    const delta = now.counts.map((count, i) => count - last.counts[i]!);
    const ms = (q: number): number | null => {
      const seconds = bucketQuantile(LATENCY_BUCKETS, delta, q);
      return seconds === undefined ? null : Math.round(seconds * 100_000) / 100;
    };
    this.#points.push({ t: now.at, itemsPerSecond: Math.max(0, now.items - last.items) / seconds, countP50Ms: ms(0.5), countP99Ms: ms(0.99) });
    if (this.#points.length > this.#keep) this.#points.splice(0, this.#points.length - this.#keep);
  }

  points(): readonly HistoryPoint[] {
    return this.#points;
  }

  close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    return Promise.resolve();
  }

  #read(): { at: number; items: number; counts: Float64Array } {
    const counts = new Float64Array(LATENCY_BUCKETS.length + 1);
    for (const cell of this.#options.countLatency()) cell.counts.forEach((n, i) => { counts[i]! += n; });
    return { at: Date.now(), items: this.#options.itemsAccepted(), counts };
  }
}
