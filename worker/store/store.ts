import type { IdMap } from './id-map.js';
import type { Member } from './ownership.js';

export interface PersistOptions {
  /** Epoch ms by which a stopping worker must let go: what is not persisted by then is reported failed (it stays in the write-ahead log). */
  readonly stopBy?: number;
  /**
   * Resolve only once every worker's count shows the ids (what a strong read needs);
   * otherwise once they are durable somewhere that will make them visible shortly.
   */
  readonly visible?: boolean;
  /**
   * The ids were handed over by other workers: their merge may wait a moment for the rest
   * of them (see merge-gather.ts). A worker's own ids never wait.
   */
  readonly handedOver?: boolean;
}

/** What a store tells the status route. */
export interface StoreStatus {
  readonly kind: string;
  readonly [key: string]: unknown;
}

/**
 * The store of record, as a worker uses it: where acknowledged ids go to be counted by
 * every worker. A worker keeps new ids in its write-ahead log and in memory (pending)
 * until a persist round hands them to the store; counts come from the store alone, so
 * every worker answers the same number once the ids are persisted, and a count never
 * goes down. Implementations: per-tenant files (files.ts) and Redis (redis.ts).
 */
export interface Store {
  readonly kind: string;
  /**
   * Makes `map`'s ids durable and counted. Never rejects: resolves with the ids it could
   * not persist, by tenant (they stay pending and in the log for the next round).
   */
  persist(map: IdMap, options?: PersistOptions): Promise<IdMap>;
  /** Makes everything persisted so far survive a power cut; until it resolves the write-ahead log must keep it. */
  checkpoint(): Promise<void>;
  /** The tenant's distinct count as the store holds it. */
  count(tenant: string): Promise<number>;
  /** The worker is stopping: store work under way or to come gives up what is not done by `at` (epoch ms). */
  windDown(at: number): void;
  /** The live workers of the cluster changed. */
  setMembers(members: readonly Member[]): void;
  /** The database was found damaged (its folder deleted, say): write back what this worker still holds in memory; resolves with how many tenant files it wrote. */
  repair(): Promise<number>;
  status(): StoreStatus;
  close(): Promise<void>;
}
