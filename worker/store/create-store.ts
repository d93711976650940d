import type { Config } from '../../shared/config.js';
import type { Logger } from '../../shared/log.js';
import { FileStore } from './files.js';
import { RedisStore } from './redis.js';
import type { Store } from './store.js';

/** A hand-over to another worker may take this long before the ids are written here instead. */
const HANDOFF_TIMEOUT_MS = 5000;

/** The store the config's `store` key names, started: per-tenant files in `database`, or Redis. */
export function createStore(config: () => Config, options: { readonly workerId: string; readonly log: Logger; readonly secret: string }): Store {
  const initial = config();
  if (initial.store.kind === 'redis') {
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
  });
}
