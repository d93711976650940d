import { readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { LOCK_SUFFIX, locksFolder } from '../shared/locks.js';
import type { Logger } from '../shared/log.js';

/**
 * Removes the shard locks left in `<database>/.locks` by workers that never let them go:
 * a worker SIGKILLed by an operator, or by the coordinator (hung, or past `kill_timeout`).
 * Such a lock does no harm while the cluster runs — the next writer of its shard takes it
 * over once it is stale — but a shard nobody writes again would keep it for good, and a
 * clean stop promises an empty `.locks/`.
 *
 * Only for a coordinator whose workers have all exited and all ran here (none run by hand
 * or on another host, ever, in this coordinator's life): then no live process can hold
 * one of these locks, since the database's cluster lock keeps every other cluster out.
 * A lock folder with anything inside is not proper-lockfile's: it is left, with a warning.
 */
export async function removeLeftLocks(database: string, log: Logger): Promise<void> {
  const folder = locksFolder(database);
  let names: string[];
  try {
    names = await readdir(folder);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`could not look for shard locks left in ${folder}`, err);
    return;
  }
  let removed = 0;
  for (const name of names.filter((entry) => entry.endsWith(LOCK_SUFFIX))) {
    try {
      await rmdir(path.join(folder, name));
      removed++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`could not remove the shard lock ${path.join(folder, name)} left by a killed worker`, err);
    }
  }
  if (removed > 0) log.info(`removed ${removed} shard lock(s) left by workers that were killed`);
}
