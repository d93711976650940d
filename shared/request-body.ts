import type { IncomingMessage } from 'node:http';
import { closeConnectionOf } from './connection-guard.js';
import { AppError } from './errors.js';

/**
 * Declared types that are clearly not a JSON batch. Anything else (none, JSON, text/plain,
 * curl -d's application/x-www-form-urlencoded, application/octet-stream...) is taken when
 * the body is a valid batch, as the original CountApp did: clients that exist send those.
 */
const NOT_A_BATCH = /^\s*(?:multipart|image|audio|video|font|model)\//i;

/** Refuses a batch whose declared Content-Type says it is a form upload or media. */
export function checkBatchContentType(req: IncomingMessage): void {
  const type = req.headers['content-type'];
  if (type !== undefined && NOT_A_BATCH.test(type)) {
    throw new AppError('unsupported_content_type', `A batch is a JSON array; the request says it is ${JSON.stringify(type.slice(0, 80))}. Send it as application/json (or with no Content-Type).`);
  }
}

/**
 * Reads the whole body, refusing early (413) once it passes `limit` bytes, from the
 * Content-Length when given, else while streaming. A refused body is left unread, so the
 * connection is closed after the answer (nothing pipelined behind it is applied).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    closeConnectionOf(req);
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
        closeConnectionOf(req);
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
