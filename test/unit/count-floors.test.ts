import { describe, expect, it } from 'vitest';
import { CountFloors } from '../../coordinator/count-floors.js';

/** One whole read: begin, a worker's count, settle, end. Returns what would be answered. */
function read(floors: CountFloors, tenant: string, count: number): number {
  const entry = floors.begin(tenant);
  const answered = floors.settle(entry, count);
  floors.end(entry);
  return answered;
}

describe('CountFloors', () => {
  it('never answers below the highest count answered before for the tenant', () => {
    const floors = new CountFloors(10);
    expect(read(floors, 'a', 5)).toBe(5);
    expect(read(floors, 'a', 3)).toBe(5); // a worker that lags
    expect(read(floors, 'a', 0)).toBe(5);
    expect(read(floors, 'a', 7)).toBe(7);
    expect(read(floors, 'b', 1)).toBe(1); // tenants are independent
    expect(floors.peek('a')).toBe(7);
  });

  it('two reads racing: the one answered last is never lower, whichever worker answered first', () => {
    const floors = new CountFloors(10);
    const slow = floors.begin('t'); // sent first, reached a worker before the append
    const fast = floors.begin('t'); // sent second, saw the append
    expect(floors.settle(fast, 9)).toBe(9);
    floors.end(fast);
    expect(floors.settle(slow, 4)).toBe(9);
    floors.end(slow);
  });

  it('keeps at most `max` tenants, forgetting the least recently asked first', () => {
    const floors = new CountFloors(3);
    for (const tenant of ['a', 'b', 'c']) read(floors, tenant, 10);
    read(floors, 'a', 10); // a is now the most recently asked
    read(floors, 'd', 1);
    expect(floors.size).toBe(3);
    expect(floors.peek('b')).toBeUndefined();
    expect(floors.forgotten).toBe(1);
    expect(['a', 'c', 'd'].map((tenant) => floors.peek(tenant))).toEqual([10, 10, 1]);
    for (let i = 0; i < 1000; i++) read(floors, `x${i}`, i);
    expect(floors.size).toBe(3);
    expect(floors.forgotten).toBe(1001);
  });

  it('never forgets a tenant while a read of it is under way (that read may have reached a worker before the one that set the floor)', () => {
    const floors = new CountFloors(2);
    const early = floors.begin('old'); // under way, not answered yet
    expect(read(floors, 'old', 50)).toBe(50); // a later read raised the floor
    // Many other tenants pass through: 'old' is the least recently asked, but still being read.
    for (let i = 0; i < 10; i++) read(floors, `other-${i}`, i);
    expect(floors.peek('old')).toBe(50);
    expect(floors.size).toBe(2); // the others made room
    expect(floors.settle(early, 20)).toBe(50);
    floors.end(early);
    // Nothing of it is under way now: it may go, and the bound holds again.
    read(floors, 'new', 1);
    expect(floors.peek('old')).toBeUndefined();
    expect(floors.size).toBe(2);
  });

  it('goes over the bound only by tenants being read, when nothing else can go', () => {
    const floors = new CountFloors(2);
    const reading = ['a', 'b', 'c', 'd'].map((tenant) => floors.begin(tenant));
    expect(floors.size).toBe(4);
    for (const entry of reading) floors.end(entry);
    expect(floors.size).toBe(2);
    expect(floors.peek('c')).toBe(0);
    expect(floors.peek('d')).toBe(0);
  });

  it('a forgotten tenant starts again from what the worker answers', () => {
    const floors = new CountFloors(1);
    read(floors, 'a', 30);
    read(floors, 'b', 1);
    expect(floors.peek('a')).toBeUndefined();
    // The store only grows, so a read that begins now sees at least 30 anyway; the floor is no longer needed.
    expect(read(floors, 'a', 31)).toBe(31);
  });

  it('a smaller bound applies at once; a bound below 1 is taken as 1', () => {
    const floors = new CountFloors(5);
    for (const tenant of ['a', 'b', 'c', 'd', 'e']) read(floors, tenant, 1);
    floors.setMax(2);
    expect(floors.size).toBe(2);
    expect(floors.peek('d')).toBe(1);
    expect(floors.peek('e')).toBe(1);
    floors.setMax(0);
    expect(floors.size).toBe(1);
  });

  it('an abandoned read (begin, then end without settle) raises nothing and unpins the tenant', () => {
    const floors = new CountFloors(1);
    const entry = floors.begin('a');
    floors.end(entry);
    expect(floors.peek('a')).toBe(0);
    read(floors, 'b', 1);
    expect(floors.peek('a')).toBeUndefined();
  });
});
