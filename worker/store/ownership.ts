import { SHARDS, fnv1a, shardOf } from './shards.js';

/** MurmurHash3's finaliser: FNV-1a alone spreads near-identical keys (`7:worker-5001`, `7:worker-5002`) poorly. */
function mix(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A live worker as the coordinator announces it. */
export interface Member {
  readonly id: string;
  readonly url: string;
}

/**
 * Which live worker writes each shard's tenant files: rendezvous hashing of the shard
 * over the live workers, so a worker joining or leaving moves only its share of shards.
 * Ownership is an economy, never a condition of correctness: any worker may append to
 * any tenant file under the shard lock (it reads what others appended first), so two
 * workers that briefly disagree about the membership still write exact files. What it
 * buys: only the owner holds a tenant's ids in memory, and the others hand their new ids
 * over instead of each reading every other worker's appends.
 */
export class Ownership {
  readonly #selfId: string;
  /** Owner of each shard; undefined where this worker writes it itself. */
  #owners: (Member | undefined)[] = new Array<Member | undefined>(SHARDS).fill(undefined);
  #members: readonly Member[] = [];

  constructor(selfId: string) {
    this.#selfId = selfId;
  }

  get members(): readonly Member[] {
    return this.#members;
  }

  /** A new live membership (this worker may or may not be in it). */
  setMembers(members: readonly Member[]): void {
    this.#members = members;
    const owners = new Array<Member | undefined>(SHARDS);
    for (let shard = 0; shard < SHARDS; shard++) {
      let best: Member | undefined;
      let bestScore = -1;
      for (const member of members) {
        const score = mix(fnv1a(`${shard}:${member.id}`));
        if (score > bestScore || (score === bestScore && best !== undefined && member.id < best.id)) {
          best = member;
          bestScore = score;
        }
      }
      owners[shard] = best === undefined || best.id === this.#selfId ? undefined : best;
    }
    this.#owners = owners;
  }

  /** The worker that writes `tenant`'s file, or undefined when it is this one (or no membership is known yet). */
  ownerOf(tenant: string): Member | undefined {
    return this.#owners[shardOf(tenant)];
  }

  /** True when this worker writes `tenant`'s file. */
  owns(tenant: string): boolean {
    return this.#owners[shardOf(tenant)] === undefined;
  }

  /** True when this worker writes the files of `shard`'s tenants (all of them while no membership is known). */
  ownsShard(shard: number): boolean {
    return this.#owners[shard] === undefined;
  }
}
