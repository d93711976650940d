import fs from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, stopAllClusters, type Cluster } from '../helpers/cluster.js';

/**
 * Issue: a coordinator under `ulimit -n 1024` with 1,500 idle connections ran out of
 * descriptors, blamed a healthy worker ("hung"), SIGKILLed it, could not respawn it
 * (`spawn EMFILE`), and its config watcher died. Here the coordinator runs under a limit
 * of 256 and gets 300 idle connections, held for longer than the hung window (5 s).
 */
const LIMIT = 256;
const IDLE_CONNECTIONS = 300;
/** Longer than the hung window (HUNG_MS, 5 s, at health_check 0.5 s), with a margin. */
const HOLD_MS = 8_000;
/** `ulimit -n` (soft and hard) for the coordinator, and so for the workers it forks. */
const UNDER_LIMIT = ['bash', '-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`];

const sockets: net.Socket[] = [];
const stoppers: (() => void)[] = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0)) stop();
  for (const socket of sockets.splice(0)) socket.destroy();
  await stopAllClusters();
});

function openFileLimitOf(pid: number): number {
  const line = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((row) => row.startsWith('Max open files'))!;
  return Number(line.slice('Max open files'.length).trim().split(/\s+/)[0]);
}

/** Opens `n` idle TCP connections to `port`; returns a function that tells how many are still open. */
async function idleConnections(port: number, n: number): Promise<() => number> {
  let open = 0;
  const made: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const socket = net.connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => {});
    made.push(new Promise<void>((resolve) => {
      socket.once('connect', () => {
        open += 1;
        socket.once('close', () => {
          open -= 1;
        });
        resolve();
      });
      socket.once('close', () => resolve());
    }));
  }
  await Promise.all(made);
  return () => open;
}

/**
 * Keeps offering new connections until the returned function is called. A descriptor the
 * coordinator frees (a health check's socket closing) is taken by the next accept, as it
 * is under a real flood; without this, a health check could keep reusing the descriptor
 * the previous check freed and never meet the shortage.
 */
function trickleConnections(port: number, everyMs: number): () => void {
  const timer = setInterval(() => {
    const socket = net.connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => {});
  }, everyMs);
  const stop = (): void => clearInterval(timer);
  stoppers.push(stop);
  return stop;
}

function closeAll(): void {
  for (const socket of sockets.splice(0)) socket.destroy();
}

/** Nothing in the log blames a worker, and every worker is the process it was. */
async function expectNoWorkerBlamed(cluster: Cluster, before: readonly number[]): Promise<void> {
  const output = cluster.output();
  expect(output).not.toMatch(/looks hung|killing it|exited unexpectedly|SIGKILL|respawning|is suspect|failed its health check/);
  const status = await cluster.status();
  expect(status.workers.map((w) => [w.state, w.pid, w.restarts])).toEqual(before.map((pid) => ['up', pid, 0]));
}

async function serves(cluster: Cluster, tenant: string): Promise<void> {
  await cluster.waitFor(async () => (await cluster.post([{ id: 'a', tenant }, { id: 'b', tenant }])).status === 200, 15_000, 'a batch accepted');
  await cluster.waitFor(async () => (await cluster.count(tenant)) === 2, 10_000, `${tenant} counted`);
}

describe(`the coordinator under an open-file limit of ${LIMIT}, with ${IDLE_CONNECTIONS} idle connections`, () => {
  it('the default max_connections (half the limit) refuses the excess cleanly; no worker is blamed; the watcher still applies edits', async () => {
    const cluster = await startCluster({
      workers: 2,
      commandPrefix: UNDER_LIMIT,
      // Only the file watch can apply an edit: no periodic re-read during the test.
      config: { config_check: 3600, health_check: 0.5 },
    });
    expect(openFileLimitOf(cluster.pid)).toBe(LIMIT);
    const pids = await cluster.workerPids();

    const stillOpen = await idleConnections(cluster.port, IDLE_CONNECTIONS);
    await sleep(HOLD_MS);
    const held = stillOpen();
    console.log(`${IDLE_CONNECTIONS} idle connections under ulimit -n ${LIMIT}: ${held} held after ${HOLD_MS / 1000} s, ${IDLE_CONNECTIONS - held} refused`);
    expect(held).toBeLessThanOrEqual(LIMIT / 2);
    expect(held).toBeGreaterThanOrEqual(LIMIT / 2 - 10); // the harness's own keep-alive connections take a few
    expect(cluster.output()).toMatch(/refused \d+ new connection\(s\): `max_connections` \(128\) were open/);
    expect(cluster.output()).not.toMatch(/EMFILE|out of file descriptors/);
    closeAll();

    await serves(cluster, 'capped');
    await expectNoWorkerBlamed(cluster, pids);
    cluster.writeConfig({ config_check: 3600, health_check: 0.5, worker_persist: 2 });
    await cluster.waitFor(() => /config.yaml reloaded: worker_persist changed/.test(cluster.output()), 10_000, 'the edit applied');
  }, 90_000);

  it('with the cap lifted above the limit it runs out of descriptors itself: it says so, blames no worker, and recovers', async () => {
    const cluster = await startCluster({
      workers: 2,
      commandPrefix: UNDER_LIMIT,
      config: { config_check: 3600, health_check: 0.5, max_connections: 100_000 },
    });
    const pids = await cluster.workerPids();

    await idleConnections(cluster.port, IDLE_CONNECTIONS);
    const stopTrickle = trickleConnections(cluster.port, 50);
    await sleep(1000);
    // An edit saved while it has no descriptors to read it with.
    cluster.writeConfig({ config_check: 3600, health_check: 0.5, max_connections: 100_000, worker_persist: 2 });
    await sleep(HOLD_MS);
    stopTrickle();
    const output = cluster.output();
    expect(output).not.toMatch(/looks hung|killing it|exited unexpectedly|SIGKILL|respawning|is suspect|failed its health check/);
    console.log(`with max_connections above the limit, the coordinator said:\n${[...new Set(output.split('\n').filter((line) => /EMFILE|descriptors/.test(line)).map((line) => line.replace(/^\S+ (\w+) coordinator( \[\w+\])? /, '$1 ')))].join('\n')}`);
    expect(output).toMatch(/cannot health-check worker-\d+: the coordinator is out of file descriptors \(EMFILE\).*not counting it against the worker/);
    closeAll();

    await serves(cluster, 'recovered');
    await expectNoWorkerBlamed(cluster, pids);
    // The edit made without descriptors is applied once it can be read, and the watch still works.
    await cluster.waitFor(() => /config.yaml reloaded: worker_persist changed/.test(cluster.output()), 15_000, 'the edit made during the shortage applied');
    cluster.writeConfig({ config_check: 3600, health_check: 0.5, max_connections: 100_000, worker_persist: 3 });
    await cluster.waitFor(() => (cluster.output().match(/config.yaml reloaded: worker_persist changed/g) ?? []).length === 2, 10_000, 'a later edit applied');
  }, 90_000);
});
