import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Every request a coordinator forwards carries this header with the coordinator's
 * instance id. A worker never forwards, so a coordinator that receives the header is being
 * used as a worker: a `workers` entry points at a coordinator (itself, under some other
 * spelling of its address, or another one), and forwarding would loop. It answers 508
 * `forwarding_loop` at once, and the forwarding coordinator logs which URL loops.
 */
export const FORWARDED_BY_HEADER = 'x-countapp-forwarded-by';

/** This coordinator process, for the header; new at every start. */
export const INSTANCE_ID: string = randomBytes(8).toString('hex');

/** The instance id of the coordinator that forwarded `req`, or undefined for a client's request. */
export function forwardedBy(req: IncomingMessage): string | undefined {
  const value = req.headers[FORWARDED_BY_HEADER];
  return Array.isArray(value) ? value.join(',') : value;
}
