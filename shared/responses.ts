import type { ServerResponse } from 'node:http';
import { closeAfter } from './connection-guard.js';
import { AppError, errorBody, type ErrorBody } from './errors.js';
import { newErrorId, type Logger } from './log.js';

/** Writes a JSON answer; small and synchronous, it is on the hot path. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * The answer to an error: its status and JSON body, with an id that finds its log line.
 * Client mistakes are logged as warnings with the message; anything else is logged with
 * its stack and the client only learns the id (never a stack trace).
 */
export function errorAnswer(err: unknown, log: Logger, context: string): { readonly error: AppError; readonly body: ErrorBody } {
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
  return { error: appError, body: errorBody(appError, id) };
}

/** Answers an error as JSON (see errorAnswer). */
export function sendError(res: ServerResponse, err: unknown, log: Logger, context: string): void {
  const { error, body } = errorAnswer(err, log, context);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  // After a 413 the rest of the body is unread: close rather than parse it as the next request.
  if (error.code === 'body_too_large' || error.code === 'shutting_down') {
    closeAfter(res);
    headers.connection = 'close';
  }
  sendJson(res, error.status, body, headers);
}
