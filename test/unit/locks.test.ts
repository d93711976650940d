import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireLock, LockBusyError, retriesWithin, withLock } from '../../shared/locks.js';
import { generous, reportTiming } from '../helpers/slow-machine.js';
import { waitFor } from '../helpers/wait.js';

const STALE_MS = 2000;

describe('withLock', () => {
  let dir: string;
  let file: string;
  let lockDir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-locks-'));
    file = path.join(dir, 'tenant.json');
    lockDir = `${file}.lock`;
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('returns what `work` returns and releases the lock', async () => {
    const result = await withLock(file, STALE_MS, async (lock) => {
      expect(lock.compromised()).toBe(false);
      return 42;
    });
    expect(result).toBe(42);
    expect(fs.existsSync(lockDir)).toBe(false);
  });

  it('reports a lock taken over by another process instead of crashing, and releases quietly', async () => {
    const result = await withLock(file, STALE_MS, async (lock) => {
      // Another process decided the lock was stale and took it: the dir is now someone else's.
      fs.rmSync(lockDir, { recursive: true });
      fs.mkdirSync(lockDir);
      const past = new Date(Date.now() - 60_000);
      fs.utimesSync(lockDir, past, past);
      // proper-lockfile notices at its next refresh (every STALE_MS / 2).
      await waitFor(() => lock.compromised(), generous(STALE_MS), 'the lock to be reported compromised');
      return 'survived';
    });
    expect(result).toBe('survived');
  });

  it('keeps concurrent callers in the same process out of each other', async () => {
    fs.writeFileSync(file, '0');
    let inside = 0;
    let maxInside = 0;
    const callers = 8;

    await Promise.all(Array.from({ length: callers }, (_, i) => withLock(file, STALE_MS, async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      // Read, yield, write: without the lock, the increments would overwrite each other.
      const value = Number(await fs.promises.readFile(file, 'utf8'));
      await sleep(5 + (i % 3) * 5);
      await fs.promises.writeFile(file, String(value + 1));
      inside--;
    })));

    expect(maxInside).toBe(1);
    expect(fs.readFileSync(file, 'utf8')).toBe(String(callers));
    expect(fs.existsSync(lockDir)).toBe(false);
  });

  it('holds `<file>.lock` as a folder while working and removes it afterwards', async () => {
    await withLock(file, STALE_MS, async () => {
      expect(fs.statSync(lockDir).isDirectory()).toBe(true);
    });
    expect(fs.existsSync(lockDir)).toBe(false);
  });

  it('releases the lock when `work` throws, and rethrows the same error', async () => {
    const boom = new Error('boom');
    await expect(withLock(file, STALE_MS, async () => {
      expect(fs.existsSync(lockDir)).toBe(true);
      throw boom;
    })).rejects.toBe(boom);
    expect(fs.existsSync(lockDir)).toBe(false);
    // And the lock can be taken again at once.
    await expect(withLock(file, STALE_MS, async () => 'again')).resolves.toBe('again');
  });

  it('locks a file that does not exist yet, without creating it', async () => {
    expect(fs.existsSync(file)).toBe(false);
    await withLock(file, STALE_MS, async () => {
      expect(fs.existsSync(lockDir)).toBe(true);
    });
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  // proper-lockfile retries every error, so this takes the whole wait (~3.5 s) before failing.
  it('fails with ENOENT when the parent folder is missing', async () => {
    const orphan = path.join(dir, 'missing', 'tenant.json');
    await expect(withLock(orphan, STALE_MS, async () => 'never')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('takes over a stale lock left behind by a dead holder at once', async () => {
    const promisedMs = 500;
    // Longer than the bound, so waiting out the stale time could not pass for "at once".
    const stale = Math.max(STALE_MS, 2 * generous(promisedMs));
    fs.mkdirSync(lockDir);
    const past = new Date(Date.now() - 10 * stale);
    fs.utimesSync(lockDir, past, past);

    const started = Date.now();
    const result = await withLock(file, stale, async () => {
      expect(fs.existsSync(lockDir)).toBe(true);
      return 'taken';
    });
    const tookMs = Date.now() - started;
    expect(result).toBe('taken');
    reportTiming(`stale lock taken over (lock_stale ${stale} ms)`, tookMs, promisedMs, 'ms');
    expect(tookMs).toBeLessThan(generous(promisedMs));
    expect(fs.existsSync(lockDir)).toBe(false);
  });

  it('waits for a fresh foreign lock that is never refreshed, then takes it once stale', async () => {
    fs.mkdirSync(lockDir);
    const started = Date.now();
    let enteredAt = 0;
    await withLock(file, STALE_MS, async () => {
      enteredAt = Date.now();
    });
    const waited = enteredAt - started;
    // Not before it is stale (a little slack for mtime granularity), not much after: the
    // retries are at most 200 ms apart, so 500 ms past the stale time is promised.
    const promisedMs = 500;
    reportTiming(`fresh foreign lock taken this long after it went stale (lock_stale ${STALE_MS} ms)`, waited - STALE_MS, promisedMs, 'ms');
    expect(waited).toBeGreaterThanOrEqual(STALE_MS - 100);
    expect(waited - STALE_MS).toBeLessThan(generous(promisedMs));
    expect(fs.existsSync(lockDir)).toBe(false);
  });

  it('gives up with LockBusyError while a live holder keeps refreshing its lock', async () => {
    fs.mkdirSync(lockDir);
    // A live holder in another process touches the lock every update period (stale / 2).
    const refresh = setInterval(() => {
      const now = new Date();
      fs.utimesSync(lockDir, now, now);
    }, STALE_MS / 4);
    try {
      const started = Date.now();
      const error = await withLock(file, STALE_MS, async () => 'never').catch((err: unknown) => err);
      expect(error).toBeInstanceOf(LockBusyError);
      expect((error as LockBusyError).name).toBe('LockBusyError');
      expect((error as LockBusyError).message).toContain(file);
      expect((error as LockBusyError).cause).toMatchObject({ code: 'ELOCKED' });
      // It waited about twice the stale time before giving up, long enough to outlast a dead holder.
      expect(Date.now() - started).toBeGreaterThanOrEqual(STALE_MS);
    } finally {
      clearInterval(refresh);
    }
    expect(fs.existsSync(lockDir)).toBe(true);
  });
});

describe('acquireLock with a deadline', () => {
  it('retries only as often as fits in maxWaitMs (5 ms growing by half, at most 200 ms apart)', () => {
    const backoff = (retries: number): number => {
      let total = 0;
      for (let i = 0, wait = 5; i < retries; i++, wait *= 1.5) total += Math.min(wait, 200);
      return total;
    };
    for (const ms of [0, 4, 5, 12, 100, 1000, 1500, 4000]) {
      const retries = retriesWithin(ms);
      expect(backoff(retries)).toBeLessThanOrEqual(ms);
      expect(backoff(retries + 1)).toBeGreaterThan(ms);
    }
  });

  it('gives up on a lock held by another holder by its deadline, not a backoff later', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countapp-locks-'));
    try {
      const file = path.join(dir, 'shard');
      const held = await acquireLock(file, STALE_MS);
      const started = performance.now();
      await expect(acquireLock(file, STALE_MS, { maxWaitMs: 600 })).rejects.toBeInstanceOf(LockBusyError);
      const waited = performance.now() - started;
      reportTiming('a busy lock given up with maxWaitMs 600', waited, 600 + 200, 'ms');
      expect(waited).toBeGreaterThanOrEqual(400);
      expect(waited).toBeLessThan(generous(600 + 200));
      await held.release();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
