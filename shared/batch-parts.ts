import { AppError } from './errors.js';

/**
 * The wire format of `POST /internal/batches`: several clients' batches in one request
 * from the coordinator to a worker, each validated, logged and answered on its own, as if
 * it had come alone. The body is the batches' raw bytes one after the other; this header
 * gives their byte lengths (`3512,3498`). Lengths rather than a joined JSON array: the
 * coordinator does not parse large batches, and one malformed batch (an unclosed string)
 * could otherwise swallow its neighbour.
 */
export const PARTS_HEADER = 'x-countapp-parts';

/** Most batches in one request. */
export const MAX_PARTS = 10_000;

const LENGTHS = /^\d{1,10}(?:,\d{1,10})*$/;

/** The header value for these batches. */
export function partsHeader(parts: readonly Buffer[]): string {
  return parts.map((part) => part.length).join(',');
}

/** The batches of a request: `body` cut at the header's lengths. Throws a 400 `invalid_batch` when they do not add up. */
export function splitParts(header: string | string[] | undefined, body: Buffer): Buffer[] {
  if (typeof header !== 'string' || !LENGTHS.test(header)) {
    throw new AppError('invalid_batch', `\`${PARTS_HEADER}\` must list the byte lengths of the batches, comma-separated.`);
  }
  const lengths = header.split(',').map(Number);
  if (lengths.length > MAX_PARTS) throw new AppError('invalid_batch', `At most ${MAX_PARTS} batches per request.`);
  const parts: Buffer[] = [];
  let at = 0;
  for (const length of lengths) {
    parts.push(body.subarray(at, at + length));
    at += length;
  }
  if (at !== body.length) throw new AppError('invalid_batch', `\`${PARTS_HEADER}\` adds up to ${at} bytes; the body has ${body.length}.`);
  return parts;
}

/** One batch's answer: its status and JSON body, as a request of its own would have had them. */
export interface PartAnswer {
  readonly status: number;
  readonly body: Buffer;
}

/** The worker's answer, `{"answers": [[status, body], ...]}` in the order of the batches: the answers of `count` batches, or undefined when `body` is not such an answer (the caller then sends each batch alone). */
export function decodePartAnswers(body: Buffer, count: number): PartAnswer[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const answers = (value as { answers?: unknown } | null)?.answers;
  if (!Array.isArray(answers) || answers.length !== count) return undefined;
  const out: PartAnswer[] = [];
  for (const answer of answers) {
    if (!Array.isArray(answer) || answer.length !== 2 || !Number.isInteger(answer[0]) || answer[1] === null || typeof answer[1] !== 'object') return undefined;
    out.push({ status: answer[0] as number, body: Buffer.from(JSON.stringify(answer[1])) });
  }
  return out;
}
