import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { capConnections, REPORT_EVERY_MS, type ConnectionCap } from '../../coordinator/connection-cap.js';
import { defaultMaxConnections, MAX_DEFAULT_CONNECTIONS, openFileLimit, parseOpenFileLimit } from '../../shared/open-file-limit.js';
import { CaptureLog } from '../helpers/capture-log.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('the open-file limit and the default max_connections', () => {
  it('reads the soft limit from /proc/<pid>/limits', () => {
    expect(parseOpenFileLimit(LIMITS)).toBe(1024);
    expect(parseOpenFileLimit(LIMITS.replace('1024 ', 'unlimited'))).toBe(Infinity);
    expect(parseOpenFileLimit('Max cpu time unlimited unlimited seconds\n')).toBeUndefined();
    if (fs.existsSync('/proc/self/limits')) expect(openFileLimit()).toBe(parseOpenFileLimit(fs.readFileSync('/proc/self/limits', 'utf8')));
  });

  it('defaults to half the limit, at least 32, at most 100,000', () => {
    expect(defaultMaxConnections(1024)).toBe(512);
    expect(defaultMaxConnections(256)).toBe(128);
    expect(defaultMaxConnections(20)).toBe(32);
    expect(defaultMaxConnections(Infinity)).toBe(MAX_DEFAULT_CONNECTIONS);
    expect(MAX_DEFAULT_CONNECTIONS).toBe(100_000);
  });
});

describe('capConnections (a real server, real sockets)', () => {
  const servers: http.Server[] = [];
  const sockets: net.Socket[] = [];
  const caps: ConnectionCap[] = [];
  afterEach(async () => {
    for (const cap of caps.splice(0)) cap.close();
    for (const socket of sockets.splice(0)) socket.destroy();
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  /** Opens `n` idle connections; each resolves true if it is still open after `holdMs`, false if the server closed it. */
  async function idleConnections(port: number, n: number, holdMs: number): Promise<boolean[]> {
    const results = Array.from({ length: n }, async () => {
      const socket = net.connect(port, '127.0.0.1');
      sockets.push(socket);
      const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
      socket.on('error', () => {});
      await new Promise((resolve) => socket.once('connect', resolve));
      return !(await Promise.race([closed, sleep(holdMs, false)]));
    });
    return Promise.all(results);
  }

  it('holds max_connections connections; a new one beyond is closed at once, and reported', async () => {
    expect(REPORT_EVERY_MS).toBe(10_000);
    const server = http.createServer((_req, res) => res.end('ok'));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const log = new CaptureLog();
    const cap = capConnections(server, 3, log);
    caps.push(cap);

    const open = await idleConnections(port, 5, 300);
    expect(open.filter(Boolean)).toHaveLength(3);
    expect(log.lines).toEqual(['WARN refused 1 new connection(s): `max_connections` (3) were open']);

    // A higher cap lets the next ones in; the summary counts what was refused since the first line.
    cap.set(5);
    expect(server.maxConnections).toBe(5);
    expect((await idleConnections(port, 2, 300)).every(Boolean)).toBe(true);
    cap.close();
    expect(log.lines).toEqual(['WARN refused 1 new connection(s): `max_connections` (3) were open', 'WARN refused 1 new connection(s): `max_connections` (3) were open']);
  });

  it('an accept error (the coordinator out of descriptors) is logged, and does not bring the server down', async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const log = new CaptureLog();
    caps.push(capConnections(server, 100, log));
    // What net.Server emits when accept(2) fails with EMFILE; without a listener it would throw.
    server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }));
    expect(log.lines).toEqual([expect.stringMatching(/ERROR could not accept 1 connection\(s\): the coordinator is out of file descriptors \(EMFILE\)/)]);
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    expect(await res.text()).toBe('ok');
  });
});
