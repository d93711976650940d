import type { Server } from 'node:net';
import type { Logger } from '../shared/log.js';
import { describeOwnResourceError, ownResourceErrorCode } from './resource-errors.js';

/** Refusals and accept errors are summed up in one log line per this interval, not one line each. */
export const REPORT_EVERY_MS = 10_000;

/** The cap on a server's connections, as connection-cap.ts applies it. */
export interface ConnectionCap {
  /** A new `max_connections` (after a config reload); open connections above it are not cut. */
  set(maxConnections: number): void;
  /** Stops the periodic summary. */
  close(): void;
}

/**
 * Caps the client connections `server` holds at `maxConnections`: Node closes each new
 * connection beyond it at once (the client sees the connection closed, nothing is read),
 * so idle or slow clients cannot take the descriptors the coordinator needs for its
 * workers. Refused connections and failed accepts (the coordinator's own EMFILE) are
 * logged, the first at once and then one summary line per REPORT_EVERY_MS; an accept
 * error never brings the server down. Call after the server listens.
 */
export function capConnections(server: Server, maxConnections: number, log: Logger): ConnectionCap {
  let max = maxConnections;
  server.maxConnections = max;
  let dropped = 0;
  /** The cap in force when the last refused connection came. */
  let droppedAt = max;
  let failed = 0;
  let lastFailure = '';
  let quietUntil = 0;

  const report = (): void => {
    if (dropped > 0) log.warn(`refused ${dropped} new connection(s): \`max_connections\` (${droppedAt}) were open`);
    if (failed > 0) log.error(`could not accept ${failed} connection(s): ${lastFailure}`);
    dropped = 0;
    failed = 0;
  };
  const timer = setInterval(() => {
    if (Date.now() >= quietUntil) report();
  }, REPORT_EVERY_MS);
  timer.unref();
  /** The first event after a quiet spell is logged at once; the rest wait for the summary. */
  const noted = (): void => {
    if (Date.now() < quietUntil) return;
    report();
    quietUntil = Date.now() + REPORT_EVERY_MS;
  };

  server.on('drop', () => {
    dropped += 1;
    droppedAt = max;
    noted();
  });
  server.on('error', (err: NodeJS.ErrnoException) => {
    const code = ownResourceErrorCode(err);
    lastFailure = code === undefined ? `${err.code ?? ''} ${err.message}`.trim() : describeOwnResourceError(code);
    failed += 1;
    noted();
  });

  return {
    set(next: number): void {
      max = next;
      server.maxConnections = next;
    },
    close(): void {
      clearInterval(timer);
      report();
    },
  };
}
