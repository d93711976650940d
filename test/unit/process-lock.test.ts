import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LockHeldError, ProcessLock } from '../../shared/process-lock.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/hold-process-lock.mjs', import.meta.url));
let dir: string;
const children: number[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'countapp-plock-'));
});
afterEach(() => {
  for (const pid of children.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('ProcessLock', () => {
  it('is exclusive, names its holder to whoever finds it taken, and is free again once released', async () => {
    const lock = await ProcessLock.acquire(dir, 'cluster', { pid: process.pid, role: 'coordinator', detail: 'port 5000' });
    const refused = await ProcessLock.acquire(dir, 'cluster', { pid: 1, role: 'other' }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(LockHeldError);
    expect((refused as LockHeldError).holder).toEqual({ pid: process.pid, role: 'coordinator', detail: 'port 5000' });
    expect((refused as Error).message).toMatch(new RegExp(`cluster of .* is held by pid ${process.pid} \\(coordinator, port 5000\\)`));
    expect(await ProcessLock.tryAcquire(dir, 'cluster', { pid: 1, role: 'other' })).toBeUndefined();
    // Another name, or the same name of another folder, is another lock.
    const other = await ProcessLock.acquire(dir, 'wal-worker-1', { pid: process.pid, role: 'worker' });
    await other.release();
    await lock.release();
    const again = await ProcessLock.acquire(dir, 'cluster', { pid: process.pid, role: 'coordinator' });
    await again.release();
  });

  it('tryAcquire finds a held lock without connecting to its holder (on Linux); acquire asks the holder who it is', async () => {
    const lock = await ProcessLock.acquire(dir, 'wal-worker-3', { pid: process.pid, role: 'worker' });
    const connect = vi.spyOn(net, 'connect');
    try {
      expect(await ProcessLock.tryAcquire(dir, 'wal-worker-3', { pid: 1, role: 'adopting' })).toBeUndefined();
      if (process.platform === 'linux') expect(connect).not.toHaveBeenCalled();
      await expect(ProcessLock.acquire(dir, 'wal-worker-3', { pid: 1, role: 'adopting' })).rejects.toBeInstanceOf(LockHeldError);
      expect(connect).toHaveBeenCalled();
    } finally {
      connect.mockRestore();
      await lock.release();
    }
  });

  it('names one folder however it is spelled', async () => {
    const lock = await ProcessLock.acquire(dir, 'cluster', { pid: process.pid, role: 'coordinator' });
    const spelled = path.join(dir, 'sub', '..', '.');
    await expect(ProcessLock.acquire(spelled, 'cluster', { pid: 1, role: 'other' })).rejects.toBeInstanceOf(LockHeldError);
    await lock.release();
  });

  it('is freed by the kernel the moment its holder is SIGKILLed, and leaves nothing in the folder', async () => {
    const child = spawn(process.execPath, [FIXTURE, dir, 'wal-worker-9'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child.pid!);
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const held = await ProcessLock.acquire(dir, 'wal-worker-9', { pid: process.pid, role: 'adopting' }).catch((err: unknown) => err);
    expect((held as LockHeldError).holder?.pid).toBe(child.pid);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    const lock = await ProcessLock.acquire(dir, 'wal-worker-9', { pid: process.pid, role: 'adopting' });
    await lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });
});
