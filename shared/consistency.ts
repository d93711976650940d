import { AppError } from './errors.js';
import { queryValues } from './query-params.js';

/**
 * How fresh a count must be. `eventual` (the default): what the store holds now, which
 * includes every acknowledged id within `worker_persist` plus a margin. `strong`: every
 * batch acknowledged before the request arrived (the coordinator makes every worker
 * persist the tenant first).
 */
export type Consistency = 'eventual' | 'strong';

/**
 * How long a worker remembers which tenants a finished persist handed to their owners
 * (`handedOverMsAgo` of its flush answer): a strong read that has lasted longer than this
 * asks every worker twice whatever they answer.
 */
export const HANDOVER_MEMORY_MS = 120_000;

/** The `consistency` parameter of a count's query (everything after `?`): absent → `eventual`; given once; any letter case. */
export function consistencyOf(query: string): Consistency {
  // Most counts have no query beyond a plain tenant: skip the split (a key may be percent-encoded).
  if (!query.includes('onsistency') && !query.includes('%')) return 'eventual';
  const values = queryValues(query, 'consistency');
  if (values.length === 0) return 'eventual';
  if (values.length > 1) throw new AppError('invalid_consistency', 'Give the `consistency` query parameter once.');
  const value = values[0]!.toLowerCase();
  if (value === 'eventual' || value === 'strong') return value;
  throw new AppError('invalid_consistency', `\`consistency\` must be \`eventual\` or \`strong\`, got ${JSON.stringify(values[0]!.slice(0, 40))}.`);
}
