import { Agent, request } from 'undici';
import { nowMs } from './stats.js';

/**
 * The harness's own HTTP client (status polls, counts, set-up posts): undici with
 * keep-alive, so a poll every millisecond does not open a connection each time.
 */
const agent = new Agent({ keepAliveTimeout: 10_000, keepAliveMaxTimeout: 10_000, headersTimeout: 60_000, bodyTimeout: 60_000 });

export interface Answer {
  readonly status: number;
  // Parsed JSON (or the raw text when the body is not JSON).
  readonly body: any;
  /** When the request was sent and when the whole answer was in, epoch ms (sub-ms precision). */
  readonly sentAt: number;
  readonly doneAt: number;
  readonly ms: number;
}

async function call(url: string, method: 'GET' | 'POST', body?: string | Buffer): Promise<Answer> {
  const sentAt = nowMs();
  const res = await request(url, {
    method,
    dispatcher: agent,
    body,
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
  });
  const text = await res.body.text();
  const doneAt = nowMs();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Keep the text.
  }
  return { status: res.statusCode, body: parsed, sentAt, doneAt, ms: doneAt - sentAt };
}

export const getJson = (url: string): Promise<Answer> => call(url, 'GET');
export const postJson = (url: string, body: string | Buffer): Promise<Answer> => call(url, 'POST', body);

/** POST /items and insist on 200 {"accepted": n}. */
export async function postItems(baseUrl: string, body: string, expected: number): Promise<Answer> {
  const answer = await postJson(`${baseUrl}/items`, body);
  if (answer.status !== 200 || answer.body?.accepted !== expected) {
    throw new Error(`POST ${baseUrl}/items answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)} (expected 200 {"accepted":${expected}})`);
  }
  return answer;
}

/** GET /items/{tenant}/count as a number; throws on anything but 200 {"count": n}. */
export async function countOf(baseUrl: string, tenant: string): Promise<{ count: number; answer: Answer }> {
  const answer = await getJson(`${baseUrl}/items/${encodeURIComponent(tenant)}/count`);
  if (answer.status !== 200 || typeof answer.body?.count !== 'number') {
    throw new Error(`GET ${baseUrl}/items/${tenant}/count answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`);
  }
  return { count: answer.body.count as number, answer };
}

export function closeHttp(): Promise<void> {
  return agent.close();
}
