import { readFileSync } from 'node:fs';
import net from 'node:net';

/** Where test ports are drawn from, before clipping to the ephemeral range. */
const LOW = 20_000;
const HIGH = 32_000;

/** Ports handed out by this process: a test file never gets the same port twice. */
const handedOut = new Set<number>();

/**
 * The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), from which
 * outgoing connections take their local port. A test server must stay out of it, or a
 * client socket of some other test may already hold the port. Linux's default when unknown.
 */
export function ephemeralPortRange(): { readonly low: number; readonly high: number } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return { low: low!, high: high! };
  } catch {
    // Not Linux: fall through to the default.
  }
  return { low: 32768, high: 60999 };
}

/** True when nothing listens on `port` of `host`: we could listen there ourselves just now. */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/** [low, high) of the ports we may hand out: [20000, 32000) clipped below the ephemeral range. */
function usableRange(count: number): { low: number; high: number } {
  const ephemeral = ephemeralPortRange();
  const high = Math.min(HIGH, ephemeral.low);
  if (high - LOW >= Math.max(count, 1) * 4) return { low: LOW, high };
  throw new Error(`freePorts: the ephemeral range starts at ${ephemeral.low}, leaving no room for ${count} test ports in [${LOW}, ${HIGH})`);
}

function randomIn(low: number, high: number): number {
  return low + Math.floor(Math.random() * (high - low));
}

/**
 * `count` ports that nothing listens on, drawn at random from [20000, 32000) and below the
 * kernel's ephemeral range, each checked by listening on 127.0.0.1 briefly. With
 * `consecutive: true` they form one block (`workers: N` means ports port+1 .. port+N).
 * A port is never handed out twice by one process. Another process may still take a port
 * between this check and its use; the random choice makes that unlikely.
 */
export async function freePorts(count: number, options: { readonly consecutive?: boolean } = {}): Promise<number[]> {
  if (!Number.isInteger(count) || count < 0) throw new Error(`freePorts: count must be a whole number, got ${count}`);
  if (count === 0) return [];
  const { low, high } = usableRange(count);

  if (options.consecutive === true) {
    for (let attempt = 0; attempt < 500; attempt++) {
      const start = randomIn(low, high - count + 1);
      const block = Array.from({ length: count }, (_, i) => start + i);
      if (block.some((port) => handedOut.has(port))) continue;
      // Reserve before the (async) check, so a concurrent call cannot pick the same block.
      for (const port of block) handedOut.add(port);
      const free = await Promise.all(block.map((port) => isPortFree(port)));
      if (free.every(Boolean)) return block;
      for (const port of block) handedOut.delete(port);
    }
    throw new Error(`freePorts: no block of ${count} consecutive free ports found in [${low}, ${high})`);
  }

  const ports: number[] = [];
  for (let attempt = 0; ports.length < count; attempt++) {
    if (attempt >= 200 * count) {
      for (const port of ports) handedOut.delete(port);
      throw new Error(`freePorts: found only ${ports.length} of ${count} free ports in [${low}, ${high})`);
    }
    const port = randomIn(low, high);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await isPortFree(port)) ports.push(port);
    else handedOut.delete(port);
  }
  return ports;
}
