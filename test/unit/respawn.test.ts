import { describe, expect, it } from 'vitest';
import { backoffDelay, FIRST_BACKOFF_MS, MAX_BACKOFF_MS, RespawnBackoff, STABLE_MS } from '../../coordinator/respawn.js';

describe('respawn backoff', () => {
  it('pins the tuning constants the README states: 0.25 s doubling to 30 s, 10 s to count as recovered', () => {
    expect(FIRST_BACKOFF_MS).toBe(250);
    expect(MAX_BACKOFF_MS).toBe(30_000);
    expect(STABLE_MS).toBe(10_000);
  });

  it('doubles from 0.25 s and stops at 30 s, however long the streak', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map(backoffDelay)).toEqual([250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(backoffDelay(10_000)).toBe(30_000);
    expect(() => backoffDelay(0)).toThrow(/`failures`/);
    expect(() => backoffDelay(1.5)).toThrow(/`failures`/);
  });

  it('counts failures in a row: runs that never got ready, or were ready only briefly', () => {
    const backoff = new RespawnBackoff();
    expect(backoff.failed(undefined)).toBe(250);
    expect(backoff.failed(undefined)).toBe(500);
    expect(backoff.failed(STABLE_MS - 1)).toBe(1000);
    expect(backoff.failures).toBe(3);
  });

  it('starts afresh after a run that stayed ready for STABLE_MS', () => {
    const backoff = new RespawnBackoff();
    for (let i = 0; i < 8; i++) backoff.failed(undefined);
    expect(backoff.failed(undefined)).toBe(30_000);
    expect(backoff.failed(STABLE_MS)).toBe(250);
    expect(backoff.failures).toBe(1);
    expect(backoff.failed(0)).toBe(500);
  });
});
