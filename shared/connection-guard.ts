import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { AppError, errorBody } from './errors.js';
import type { Logger } from './log.js';

/**
 * Keeps every answer with its own request on a keep-alive connection, where an HTTP/1.1
 * client reads answers strictly in the order it sent its requests (pipelining):
 * - a request that arrives behind one whose answer closes the connection (a 413, a
 *   shutdown 503, a client's own `Connection: close`) is not applied: it could never be
 *   answered;
 * - bytes that are not HTTP, arriving behind a valid request whose answer is still being
 *   worked out, get their 400 only after that answer, never in its place.
 */

/** Connections whose current answer is their last: later requests on them are dropped unread. */
const closing = new WeakSet<Duplex>();
/** The last request dispatched on each connection, with its response. */
const lastExchange = new WeakMap<Duplex, { readonly req: IncomingMessage; readonly res: ServerResponse }>();
/** Connections whose unparsable bytes are already being answered (Node reports each later chunk again). */
const refused = new WeakSet<Duplex>();

/** Called for every request before its handler: false when it must not be applied (see above). */
export function admit(req: IncomingMessage, res: ServerResponse): boolean {
  const socket = req.socket;
  if (closing.has(socket)) return false;
  lastExchange.set(socket, { req, res });
  // The client asked to close after this one (Connection: close, HTTP/1.0).
  if (!res.shouldKeepAlive) closing.add(socket);
  return true;
}

/** This response is the connection's last: it says `Connection: close` and nothing after it is applied. */
export function closeAfter(res: ServerResponse): void {
  res.shouldKeepAlive = false;
  if (res.req?.socket) closing.add(res.req.socket);
}

/** The same, decided before a response exists (a body refused on its declared size). */
export function closeConnectionOf(req: IncomingMessage): void {
  closing.add(req.socket);
}

/** How long a connection answered 400 stays open for the client to read the answer. */
const LINGER_MS = 1000;

function clientErrorReason(code: string | undefined): string {
  if (code === 'HPE_HEADER_OVERFLOW') return 'The request headers are too large.';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'The request took too long to arrive.';
  return 'The request is not valid HTTP.';
}

/**
 * The server's `clientError` handler: Node's own answer to unparsable HTTP is a bare 400
 * with no body, written even when an earlier request's answer is still owed.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, log: Logger): void {
  if (refused.has(socket)) return;
  refused.add(socket);
  closing.add(socket);
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const send400 = (): void => {
    if (!socket.writable || socket.destroyed) {
      socket.destroy();
      return;
    }
    const id = log.error(`bad HTTP from a client: ${err.code ?? ''} ${err.message}`);
    const body = JSON.stringify(errorBody(new AppError('bad_request', clientErrorReason(err.code)), id));
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    // Destroying at once could reset the connection before the client read the answer;
    // a client that keeps it open is cut after a moment (and a request left half-read with it).
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
  const last = lastExchange.get(socket);
  if (last === undefined || last.res.writableFinished) {
    send400();
  } else if (last.req.complete) {
    // The bad bytes came after a whole request whose answer is still being worked out: that answer first.
    last.res.once('finish', send400);
    last.res.once('close', () => {
      if (!last.res.writableFinished) socket.destroy();
    });
  } else if (!last.res.headersSent && (socket as Socket & { _httpMessage?: unknown })._httpMessage === last.res) {
    // The request itself is broken (its body, or it stopped arriving): the 400 is its own answer.
    send400();
  } else {
    // An earlier answer is owed before this request's: close rather than answer out of turn.
    socket.destroy();
  }
}

/** Answers waiting for their turn on each connection: called if it closes first. */
const waitingForTurn = new WeakMap<Duplex, Set<() => void>>();

/**
 * Runs `send` when `res` is the answer its connection writes next: at once, or, behind
 * pipelined requests still being answered, when Node hands it the connection. So what it
 * writes is decided at the moment it goes out, after every answer before it on the
 * connection (a count is then never lower than one the same client read before it).
 * `gone` runs instead when the connection closes first.
 */
export function whenNextOnConnection(res: ServerResponse, send: () => void, gone: () => void): void {
  const socket = res.req.socket;
  if (res.socket) {
    send();
    return;
  }
  if (socket.destroyed) {
    gone();
    return;
  }
  let waiting = waitingForTurn.get(socket);
  if (waiting === undefined) {
    const set = new Set<() => void>();
    waiting = set;
    waitingForTurn.set(socket, set);
    // One listener per connection, however deep the pipeline.
    socket.once('close', () => {
      waitingForTurn.delete(socket);
      for (const onClose of set) onClose();
    });
  }
  const set = waiting;
  const onClose = (): void => {
    res.off('socket', onSocket);
    gone();
  };
  const onSocket = (): void => {
    set.delete(onClose);
    send();
  };
  set.add(onClose);
  res.once('socket', onSocket);
}
