import { describe, expect, it } from 'vitest';
import { Ownership, type Member } from '../../worker/store/ownership.js';
import { SHARDS, shardOf } from '../../worker/store/shards.js';

const members = (n: number): Member[] => Array.from({ length: n }, (_, i) => ({ id: `worker-${5001 + i}`, url: `http://127.0.0.1:${5001 + i}` }));
/** The owner id of each shard, as worker `self` sees it. */
function owners(self: string, list: Member[]): string[] {
  const ownership = new Ownership(self);
  ownership.setMembers(list);
  const tenants = Array.from({ length: SHARDS }, (_, shard) => {
    for (let i = 0; ; i++) if (shardOf(`t${i}`) === shard) return `t${i}`;
  });
  return tenants.map((tenant) => ownership.ownerOf(tenant)?.id ?? self);
}

describe('Ownership', () => {
  it('gives every shard one owner, the same whichever worker asks, spread over the members', () => {
    const list = members(4);
    const views = list.map((member) => owners(member.id, list));
    for (const view of views) expect(view).toEqual(views[0]);
    const share = new Map<string, number>();
    for (const id of views[0]!) share.set(id, (share.get(id) ?? 0) + 1);
    expect(share.size).toBe(4);
    for (const n of share.values()) expect(n).toBeGreaterThan(SHARDS / 4 / 2);
  });

  it('moves only the shards of a worker that leaves', () => {
    const before = owners('worker-5001', members(4));
    const after = owners('worker-5001', members(3));
    before.forEach((owner, shard) => {
      if (owner !== 'worker-5004') expect(after[shard]).toBe(owner);
    });
  });

  it('owns everything while no membership is known (a worker merges its own ids then)', () => {
    const ownership = new Ownership('worker-5001');
    expect(ownership.owns('anything')).toBe(true);
    ownership.setMembers([]);
    expect(ownership.ownerOf('anything')).toBeUndefined();
  });
});
