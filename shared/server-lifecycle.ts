import http from 'node:http';
import { admit, answerClientError } from './connection-guard.js';
import type { Logger } from './log.js';

/**
 * An HTTP server's life: created with our timeouts and connection rules, listening, and
 * closed gracefully. The coordinator's and the workers' servers both start here.
 */

/** Above the usual client and load-balancer idle timeouts (60 s), so the client closes first, not us mid-request. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** Node checks headersTimeout <= requestTimeout; both bound slow clients. */
export const HEADERS_TIMEOUT_MS = 66_000;
export const REQUEST_TIMEOUT_MS = 120_000;

/**
 * An http.Server with our timeouts that answers unparsable HTTP with a JSON 400 (after
 * any answer still owed on that connection) and applies no request it could not answer
 * (see connection-guard.ts).
 *
 * A client that half-closes its connection after sending its request (shutdown(SHUT_WR),
 * `nc -N`) still gets its answer, then the connection closes: Node's default would close
 * at once, after the request had been applied, leaving the client without its answer.
 */
export function createHttpServer(handler: http.RequestListener, log: Logger): http.Server {
  const server = http.createServer((req, res) => {
    if (admit(req, res)) handler(req, res);
  });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket, log));
  return server;
}

export function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/** Stops listening, lets requests in flight finish (at most `graceMs`), then cuts every connection. */
export function closeServer(server: http.Server, graceMs: number, log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    // Connections that finish their request after this point would sit idle until the keep-alive timeout.
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const cut = setTimeout(() => {
      log.warn(`requests still running after ${graceMs / 1000} s of shutdown: closing their connections`);
      server.closeAllConnections();
    }, graceMs);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(cut);
      resolve();
    });
    server.closeIdleConnections();
  });
}
