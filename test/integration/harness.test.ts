import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ephemeralPortRange, freePorts, isPortFree } from '../helpers/ports.js';

const opened: net.Server[] = [];

/** Listens on `port` of 127.0.0.1, proving it was free; closed after the test. */
function listenOn(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      opened.push(server);
      resolve(server);
    });
  });
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
});

describe('freePorts', () => {
  const { low: ephemeralLow } = ephemeralPortRange();

  it('reads the ephemeral range of this machine', () => {
    const { low, high } = ephemeralPortRange();
    expect(Number.isInteger(low)).toBe(true);
    expect(high).toBeGreaterThanOrEqual(low);
  });

  it('hands out distinct bindable ports below the ephemeral range', async () => {
    const ports = await freePorts(5);
    expect(ports).toHaveLength(5);
    expect(new Set(ports).size).toBe(5);
    for (const port of ports) {
      expect(Number.isInteger(port)).toBe(true);
      expect(port).toBeGreaterThanOrEqual(20_000);
      expect(port).toBeLessThan(Math.min(32_000, ephemeralLow));
    }
    await Promise.all(ports.map(listenOn));
  });

  it('hands out a block of consecutive bindable ports', async () => {
    const block = await freePorts(5, { consecutive: true });
    expect(block).toHaveLength(5);
    block.forEach((port, i) => expect(port).toBe(block[0]! + i));
    expect(block[0]!).toBeGreaterThanOrEqual(20_000);
    expect(block.at(-1)!).toBeLessThan(Math.min(32_000, ephemeralLow));
    await Promise.all(block.map(listenOn));
  });

  it('never hands out the same port twice in one process', async () => {
    const seen = new Set<number>();
    for (let i = 0; i < 10; i++) {
      for (const port of [...(await freePorts(3)), ...(await freePorts(4, { consecutive: true }))]) {
        expect(seen.has(port)).toBe(false);
        seen.add(port);
      }
    }
    expect(seen.size).toBe(70);
  });

  it('never hands out the same port to concurrent callers', async () => {
    const batches = await Promise.all(Array.from({ length: 8 }, (_, i) => freePorts(4, { consecutive: i % 2 === 0 })));
    const all = batches.flat();
    expect(new Set(all).size).toBe(all.length);
  });

  it('returns nothing for 0', async () => {
    expect(await freePorts(0)).toEqual([]);
  });

  it('rejects a bad count', async () => {
    await expect(freePorts(-1)).rejects.toThrow(/count/);
    await expect(freePorts(1.5)).rejects.toThrow(/count/);
  });

  it('isPortFree tells a taken port from a free one', async () => {
    const [port] = await freePorts(1);
    expect(await isPortFree(port!)).toBe(true);
    await listenOn(port!);
    expect(await isPortFree(port!)).toBe(false);
  });
});
