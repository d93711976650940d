import type { Config } from '../../shared/config.js';
import type { Logger } from '../../shared/log.js';
import { FileStore } from './files.js';
import { gatherWindowMs } from './merge-gather.js';
import type { Store } from './store.js';

/** A hand-over to another worker may take this long before the ids are written here instead. */
const HANDOFF_TIMEOUT_MS = 5000;

/**
 * The store the config's `store` key names, started: per-tenant files in `database`, or
 * Redis. The Redis client is loaded only for Redis: it is a tenth of a second of a
 * worker's start on an idle core, paid by every worker of a files cluster otherwise.
 */
export async function createStore(config: () => Config, options: { readonly workerId: string; readonly log: Logger; readonly secret: string }): Promise<Store> {
  const initial = config();
  if (initial.store.kind === 'redis') {
    const { RedisStore } = await import('./redis.js');
    const store = new RedisStore({ spec: initial.store, log: options.log, durability: () => config().durability });
    store.start();
    return store;
  }
  return new FileStore({
    database: initial.database,
    workerId: options.workerId,
    log: options.log,
    secret: () => options.secret,
    lockStaleMs: initial.lock_stale * 1000,
    thread: true,
    sync: () => config().durability === 'fsync',
    handoffTimeoutMs: () => Math.min(HANDOFF_TIMEOUT_MS, config().forward_timeout * 1000),
    gatherMs: () => gatherWindowMs(config().worker_persist, config().worker_publish),
  });
}
