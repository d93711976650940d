import path from 'node:path';
import { locksFolder } from '../../shared/locks.js';

/**
 * Tenants are spread over a fixed number of shards by a hash of their name. A shard is
 * the unit of locking (one proper-lockfile lock covers the appends to all its tenants'
 * files, so a round over thousands of tenants takes at most SHARDS locks) and of
 * ownership (one worker writes a shard's files while the membership holds). Every
 * process of every version must agree on both numbers: never change them.
 */
export const SHARDS = 256;

/** FNV-1a over the UTF-16 code units: cheap, stable across processes and versions. */
export function fnv1a(text: string, seed = 0x811c9dc5): number {
  let hash = seed;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export function shardOf(tenant: string): number {
  return fnv1a(tenant) % SHARDS;
}

export { locksFolder } from '../../shared/locks.js';

/** What proper-lockfile locks for a shard (it creates `<this>.lock`). */
export function shardLockTarget(database: string, shard: number): string {
  return path.join(locksFolder(database), `shard-${shard.toString(16).padStart(2, '0')}`);
}
