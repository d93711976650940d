/** What the coordinator answered: its status and body (parsed when JSON). */
export interface Answer {
  readonly status: number;
  // `any`: the commands read the shapes the OpenAPI document describes.
  readonly body: any;
}

/** The coordinator could not be reached at all (refused, unknown host, no answer in time). */
export class UnreachableError extends Error {
  override name = 'UnreachableError';
}

/** How long one request may take before the command gives up on it. */
const REQUEST_TIMEOUT_MS = 30_000;

function reasonOf(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if ((err as Error).name === 'TimeoutError') return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  return typeof cause?.message === 'string' ? cause.message : (err as Error).message;
}

/** The client commands' requests to one coordinator (Node's fetch: keep-alive connections). */
export class CoordinatorClient {
  readonly base: string;

  constructor(base: string) {
    this.base = base;
  }

  get(pathname: string): Promise<Answer> {
    return this.#request('GET', pathname);
  }

  post(pathname: string, body: string): Promise<Answer> {
    return this.#request('POST', pathname, body);
  }

  async #request(method: string, pathname: string, body?: string): Promise<Answer> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${pathname}`, {
        method,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
      });
    } catch (err) {
      throw new UnreachableError(`cannot reach the coordinator at ${this.base} (${reasonOf(err)}): is it running? (--url or --config names another one)`, { cause: err });
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Not JSON (a proxy's page, say): kept as text; foreignAnswer quotes its start.
    }
    return { status: res.status, body: parsed };
  }
}

/** How much of an answer that is not CountApp's a message quotes. */
const EXCERPT_CHARS = 200;

/** One of CountApp's JSON errors (`{"error":{"code":...,"message":...,"id":...}}`), or undefined for any other body. */
export function countAppError(answer: Answer): { readonly code: string; readonly message?: unknown; readonly id?: unknown } | undefined {
  const error = (answer.body as { error?: { code?: unknown } } | null)?.error;
  return typeof error?.code === 'string' ? (error as { code: string }) : undefined;
}

/**
 * What an answer that is not CountApp's says (a proxy's or another server's HTML page, at
 * --url or behind it): its status and the start of its body on one line, not the whole page.
 */
export function foreignAnswer(answer: Answer): string {
  const text = (typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body)).replace(/\s+/g, ' ').trim();
  const excerpt = text === '' ? 'an empty body' : text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}…` : text;
  return `HTTP ${answer.status}, not an answer of a CountApp coordinator: ${excerpt}`;
}

/** `code: message (id ...)` of one of our JSON errors, or foreignAnswer's line for any other answer. */
export function describeError(answer: Answer): string {
  const error = countAppError(answer);
  if (error !== undefined) return `${answer.status} ${error.code}: ${String(error.message)}${typeof error.id === 'string' ? ` (log id ${error.id})` : ''}`;
  return foreignAnswer(answer);
}
