import http from 'node:http';
import { Pool } from 'undici';

/**
 * The minimal forwarding proxy the coordinator is compared with: a bare node:http server
 * that reads each request and hands it, as is, to a random worker over an undici Pool,
 * then passes the answer back. No validation, no retry, no coalescing — about the least
 * one Node hop can cost. Run as its own process (bench/child.ts forks it), like the
 * coordinator, so it does not share the load generator's event loop.
 *
 * argv: <port> <worker URL>...
 */
const [portText, ...urls] = process.argv.slice(2);
const port = Number(portText);
if (!Number.isInteger(port) || urls.length === 0) {
  process.stderr.write('usage: proxy.js <port> <worker URL>...\n');
  process.exit(2);
}

// Same shape as the coordinator's forwarder: one keep-alive Pool of up to 32 connections per worker.
const pools = urls.map((url) => new Pool(url, { connections: 32, pipelining: 1 }));

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const pool = pools[Math.floor(Math.random() * pools.length)]!;
    const contentType = req.headers['content-type'];
    pool.request({
      method: req.method as 'GET' | 'POST',
      path: req.url ?? '/',
      headers: contentType === undefined ? {} : { 'content-type': contentType },
      body: chunks.length === 0 ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
    }).then(async (upstream) => {
      const body = Buffer.from(await upstream.body.arrayBuffer());
      res.writeHead(upstream.statusCode, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
      res.end(body);
    }).catch((err: unknown) => {
      const body = JSON.stringify({ error: { code: 'bad_gateway', message: String(err) } });
      res.writeHead(502, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
});
server.keepAliveTimeout = 65_000;

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  void Promise.allSettled(pools.map((pool) => pool.destroy())).then(() => process.exit(0));
  setTimeout(() => process.exit(0), 1_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('disconnect', stop);

server.listen(port, '127.0.0.1', () => process.send?.({ type: 'ready' }));
