import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError, errorBody } from './errors.js';
import { newErrorId, type Logger } from './log.js';

/** Writes a JSON answer; small and synchronous, it is on the hot path. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Answers an error as JSON with an id that finds its log line. Client mistakes are
 * logged as warnings with the message; anything else is logged with its stack and the
 * client only learns the id (never a stack trace).
 */
export function sendError(res: ServerResponse, err: unknown, log: Logger, context: string): void {
  let appError: AppError;
  let id: string;
  if (err instanceof AppError) {
    appError = err;
    id = newErrorId();
    if (err.status >= 500) log.error(`${context}: ${err.message}`, err.cause, id);
    else log.warn(`${context}: ${err.code}: ${err.message}`, undefined, id);
  } else {
    appError = new AppError('internal');
    id = log.error(`${context}: unexpected error`, err);
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  // After a 413 the rest of the body is unread: close rather than parse it as the next request.
  if (appError.code === 'body_too_large' || appError.code === 'shutting_down') headers.connection = 'close';
  sendJson(res, appError.status, errorBody(appError, id), headers);
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** A batch must say it is JSON; a missing Content-Type is accepted as JSON (plain scripts often omit it). */
export function checkJsonContentType(req: IncomingMessage): void {
  const type = req.headers['content-type'];
  if (type === undefined || type === '') return;
  if (!JSON_TYPE.test(type)) {
    throw new AppError('unsupported_content_type', `Send the batch with Content-Type: application/json (got ${JSON.stringify(type.slice(0, 80))}).`);
  }
}

/**
 * Reads the whole body, refusing early (413) once it passes `limit` bytes, from the
 * Content-Length when given, else while streaming.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new AppError('body_too_large', `The request body is ${declared} bytes; the limit is ${limit}.`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        req.pause();
        reject(new AppError('body_too_large', `The request body is over the limit of ${limit} bytes.`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (!failed) {
        failed = true;
        reject(new AppError('bad_request', 'The request body could not be read.', { cause: err }));
      }
    });
  });
}

/** The header a control call carries the cluster secret in. */
export const SECRET_HEADER = 'x-countapp-secret';
