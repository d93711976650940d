import type { RedisClientType, RedisClusterType } from '@redis/client';
import type { Durability } from '../../shared/config.js';

/** What Redis does with what it acknowledged: its `appendonly` and `appendfsync` settings (per master of a Cluster). */
export interface RedisPersistence {
  /** `yes`/`no` per node; `unknown` when CONFIG GET was refused (managed services often rename it). */
  readonly appendonly: string;
  readonly appendfsync: string;
  /** Nodes whose settings differ from the first one's, `host:port` each. */
  readonly mixed: readonly string[];
  /** Why the settings are unknown, when they are. */
  readonly unknownBecause?: string;
}

async function configOf(client: RedisClientType): Promise<{ appendonly: string; appendfsync: string }> {
  const reply = (await client.configGet(['appendonly', 'appendfsync'])) as Record<string, string>;
  return { appendonly: reply.appendonly ?? 'unknown', appendfsync: reply.appendfsync ?? 'unknown' };
}

/** Asks every master (one node: the node) for its persistence settings with CONFIG GET. */
export async function redisPersistence(connection: RedisClientType | RedisClusterType, cluster: boolean): Promise<RedisPersistence> {
  try {
    if (!cluster) {
      const settings = await configOf(connection as RedisClientType);
      return { ...settings, mixed: [] };
    }
    const redisCluster = connection as RedisClusterType;
    const nodes = await Promise.all(redisCluster.masters.map(async (master) => ({
      address: `${master.host}:${master.port}`,
      settings: await configOf((await redisCluster.nodeClient(master)) as unknown as RedisClientType),
    })));
    // The weakest node decides what the cluster keeps.
    const rank = (s: { appendonly: string; appendfsync: string }): number => (s.appendonly !== 'yes' ? 0 : s.appendfsync === 'always' ? 3 : s.appendfsync === 'everysec' ? 2 : 1);
    const weakest = nodes.reduce((a, b) => (rank(b.settings) < rank(a.settings) ? b : a));
    const mixed = nodes.filter((node) => rank(node.settings) !== rank(weakest.settings)).map((node) => node.address);
    return { ...weakest.settings, mixed };
  } catch (err) {
    return { appendonly: 'unknown', appendfsync: 'unknown', mixed: [], unknownBecause: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Whether Redis keeps what it acknowledged as long as the worker's `durability` promises.
 * A worker deletes its write-ahead log once Redis answered, so from then on Redis alone
 * holds the ids: with `appendonly no` (or only RDB snapshots) a Redis restart loses them;
 * `appendfsync no` leaves them to the kernel's flush (up to ~30 s lost on a power cut);
 * `everysec` loses nothing when redis-server is killed (the AOF is written before the
 * answer) and at most about a second on a power cut; `always` loses nothing.
 */
export function describePersistence(p: RedisPersistence, durability: Durability): { level: 'ok' | 'warn' | 'error'; message: string } {
  const mixed = p.mixed.length > 0 ? ` (the weakest node's; ${p.mixed.join(', ')} differ)` : '';
  if (p.appendonly === 'unknown') {
    return { level: 'warn', message: `cannot check its persistence settings (CONFIG GET: ${p.unknownBecause ?? 'no answer'}). Acknowledged items are durable only with appendonly yes and appendfsync everysec or always: make sure they are set.` };
  }
  if (p.appendonly !== 'yes') {
    return { level: 'error', message: `appendonly is ${p.appendonly}${mixed}: Redis keeps no append-only file, so a Redis restart loses the ids persisted since its last snapshot — acknowledged items are NOT durable. Set appendonly yes and appendfsync everysec (or always).` };
  }
  if (p.appendfsync === 'no') {
    return { level: 'warn', message: `appendfsync is no${mixed}: Redis leaves fsyncs of its append-only file to the kernel, so a power cut of the Redis host can lose the last ~30 s of persisted ids. Set appendfsync everysec (or always).` };
  }
  if (p.appendfsync === 'everysec' && durability === 'fsync') {
    return { level: 'ok', message: `appendonly yes, appendfsync everysec${mixed}: nothing persisted is lost when redis-server is killed; a power cut of the Redis host can lose the last second (appendfsync always closes that too)` };
  }
  return { level: 'ok', message: `appendonly yes, appendfsync ${p.appendfsync}${mixed}: what Redis acknowledged survives a restart` };
}
