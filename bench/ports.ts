import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * Free ports for the clusters and the proxy, drawn at random from [LOW, HIGH) and kept
 * below the kernel's ephemeral range (32768 by default), where outgoing connections take
 * their local ports and could already hold "our" port.
 */
const LOW = 20_000;
const HIGH = 32_000;

const handedOut = new Set<number>();

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 0) return low;
  } catch {
    // Not Linux.
  }
  return 32_768;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive free ports (a coordinator's port, then its workers' port+1..port+N). */
export async function freePortBlock(count: number): Promise<number[]> {
  const high = Math.min(HIGH, ephemeralLow());
  for (let attempt = 0; attempt < 500; attempt++) {
    const start = LOW + Math.floor(Math.random() * (high - LOW - count));
    const block = Array.from({ length: count }, (_, i) => start + i);
    if (block.some((port) => handedOut.has(port))) continue;
    const free = await Promise.all(block.map(isFree));
    if (free.every(Boolean)) {
      for (const port of block) handedOut.add(port);
      return block;
    }
  }
  throw new Error(`no block of ${count} free ports found in [${LOW}, ${high})`);
}
