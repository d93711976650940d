import type { Cluster } from './cluster.js';

/** One item of a batch. */
export interface Item {
  readonly id: string;
  readonly tenant: string;
}

/**
 * What clients were told: every batch answered 200 is acknowledged (its items must be
 * counted, always); every batch sent may have been stored, whatever its answer (a
 * connection cut after the worker logged it). After the dust settles, each tenant's count
 * must be at least its acknowledged ids (else some were lost) and at most its sent ids
 * (else something was counted twice or made up).
 */
export class Ledger {
  readonly acked = new Map<string, Set<string>>();
  readonly sent = new Map<string, Set<string>>();
  ok = 0;
  failed = 0;
  /** Answers other than 200, by status (0: no answer at all). */
  readonly statuses = new Map<number, number>();

  static #record(into: Map<string, Set<string>>, batch: readonly Item[]): void {
    for (const { id, tenant } of batch) {
      let ids = into.get(tenant);
      if (ids === undefined) into.set(tenant, (ids = new Set()));
      ids.add(id);
    }
  }

  /** The same record without one tenant's ids (the batches it was in still count as told). */
  withoutTenant(tenant: string): Ledger {
    const copy = new Ledger();
    for (const [name, ids] of this.acked) if (name !== tenant) copy.acked.set(name, ids);
    for (const [name, ids] of this.sent) if (name !== tenant) copy.sent.set(name, ids);
    copy.ok = this.ok;
    copy.failed = this.failed;
    for (const [status, n] of this.statuses) copy.statuses.set(status, n);
    return copy;
  }

  /** Posts `batch` through `cluster` (or to `target`) and records what the client was told. */
  async post(cluster: Cluster, batch: readonly Item[], target?: string): Promise<number> {
    Ledger.#record(this.sent, batch);
    let status = 0;
    try {
      status = (await cluster.post(batch, target)).status;
    } catch {
      // No answer: it may or may not have been stored.
    }
    if (status === 200) {
      Ledger.#record(this.acked, batch);
      this.ok++;
    } else {
      this.failed++;
      this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    }
    return status;
  }

  /** Distinct acknowledged ids over all tenants. */
  get ackedItems(): number {
    let n = 0;
    for (const ids of this.acked.values()) n += ids.size;
    return n;
  }

  /**
   * Every worker's count of every tenant the ledger knows, against it: `lost` sums what is
   * missing from acknowledged ids, `overCounted` what exceeds the ids ever sent.
   */
  async check(cluster: Cluster, urls: readonly string[] = cluster.workerUrls): Promise<{ lost: number; overCounted: number; workers: number }> {
    let lost = 0;
    let overCounted = 0;
    for (const [tenant, sentIds] of this.sent) {
      const acked = this.acked.get(tenant)?.size ?? 0;
      for (const url of urls) {
        const count = await cluster.count(tenant, url);
        lost += Math.max(0, acked - count);
        overCounted += Math.max(0, count - sentIds.size);
      }
    }
    return { lost, overCounted, workers: urls.length };
  }

  /** A line for the test's output. */
  summary(): string {
    const refused = [...this.statuses].map(([status, n]) => `${n}× ${status === 0 ? 'no answer' : status}`).join(', ');
    return `${this.ok} batches acknowledged (${this.ackedItems} distinct items), ${this.failed} not${refused === '' ? '' : ` (${refused})`}`;
  }
}

/** Clients posting random batches of fresh ids over `tenants` until `until` (epoch ms) or `stop()` says so, each waiting for its answer. */
export async function postUntil(cluster: Cluster, ledger: Ledger, options: { clients: number; until: number; tenants: readonly string[]; prefix: string; batch?: number; stop?: () => boolean }): Promise<void> {
  const size = options.batch ?? 20;
  let next = 0;
  const client = async (): Promise<void> => {
    while (Date.now() < options.until && options.stop?.() !== true) {
      const batch = Array.from({ length: size }, () => {
        const n = next++;
        return { id: `${options.prefix}-${n}`, tenant: options.tenants[n % options.tenants.length]! };
      });
      await ledger.post(cluster, batch);
    }
  };
  await Promise.all(Array.from({ length: options.clients }, client));
}

