import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, validateConfig } from '../../shared/config.js';
import { reachesListener } from '../../shared/own-address.js';

const PORT = 5000;

/** Every spelling of this machine's loopback or "any" address a URL parser lets through. */
const LOOPBACK_SPELLINGS = [
  '127.0.0.1', '127.1', '2130706433', '0x7f.1', '0177.0.0.1', '127.0.0.2', '127.255.255.254',
  '0.0.0.0', '0', '[::]', '[::1]', '[0:0:0:0:0:0:0:1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]',
  '[::ffff:0.0.0.0]', '[::127.0.0.1]', 'localhost', 'LOCALHOST', 'localhost.', 'foo.localhost',
];

/** validateConfig's verdict on a config whose only worker is `url`. */
function refusal(url: string, extra: Record<string, unknown> = {}): string | undefined {
  try {
    validateConfig({ port: PORT, workers: [url], ...extra }, '/tmp');
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
}

/** This machine's interface addresses, as a URL writes them. */
function interfaceHosts(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => list ?? []).map((entry) => (entry.family === 'IPv6' ? `[${entry.address.split('%')[0]}]` : entry.address));
}

describe('a workers entry that is the coordinator itself is refused', () => {
  it.each(LOOPBACK_SPELLINGS)('http://%s:<port> with the coordinator on loopback (the default host)', (host) => {
    const message = refusal(`http://${host}:${PORT}`);
    expect(message, `http://${host}:${PORT} was accepted`).toBeDefined();
    expect(message).toMatch(/workers\[0\]/);
    expect(message).toMatch(/own (address|port)/);
  });

  it.each(LOOPBACK_SPELLINGS)('http://%s:<port> with the coordinator on all interfaces (host 0.0.0.0 and ::)', (host) => {
    expect(refusal(`http://${host}:${PORT}`, { host: '0.0.0.0' })).toBeDefined();
    expect(refusal(`http://${host}:${PORT}`, { host: '::' })).toBeDefined();
  });

  it("refuses this machine's interface addresses and name when the coordinator listens on all interfaces", () => {
    const hosts = [...interfaceHosts(), os.hostname()];
    expect(hosts.length).toBeGreaterThan(1);
    for (const host of hosts) expect(refusal(`http://${host}:${PORT}`, { host: '0.0.0.0' }), host).toBeDefined();
  });

  it('refuses the listen address itself under another spelling when it is a specific address', () => {
    expect(refusal(`http://[::ffff:c000:201]:${PORT}`, { host: '192.0.2.1' })).toBeDefined();
    expect(refusal(`http://192.0.2.1:${PORT}`, { host: '192.0.2.1' })).toBeDefined();
  });

  it('accepts the same spellings on another port, and another machine on the same port', () => {
    for (const host of LOOPBACK_SPELLINGS) expect(refusal(`http://${host}:${PORT + 1}`), host).toBeUndefined();
    expect(refusal(`http://192.0.2.1:${PORT}`)).toBeUndefined();
    expect(refusal(`http://[2001:db8::1]:${PORT}`)).toBeUndefined();
    // A coordinator bound to one address is not reached through another machine's, in any spelling.
    expect(refusal(`http://[::ffff:192.0.2.2]:${PORT}`, { host: '192.0.2.1' })).toBeUndefined();
    // An IPv4-mapped loopback spelling is 127.0.0.1 itself: a worker on this machine, on the coordinator's port.
    expect(refusal(`http://[::ffff:127.0.0.1]:${PORT}`, { host: '192.0.2.1' })).toBe(refusal(`http://127.0.0.1:${PORT}`, { host: '192.0.2.1' }));
  });
});

describe('reachesListener', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1', true],
    ['::ffff:7f00:1', '127.0.0.1', true],
    ['[::1]', 'localhost', true],
    ['0.0.0.0', '::1', true],
    ['192.0.2.1', '127.0.0.1', false],
    ['192.0.2.1', '::', false],
    ['::ffff:192.0.2.1', '192.0.2.1', true],
    ['2001:db8::1', '2001:0db8:0:0::1', true],
    ['2001:db8::2', '2001:db8::1', false],
    ['example.com', '127.0.0.1', false],
  ])('%s reaches a listener on %s: %s', (host, listener, expected) => {
    expect(reachesListener(host, listener)).toBe(expected);
  });
});
