/**
 * The one registry of error codes a client can see. Each code has its HTTP status and
 * the user-facing message used when the thrower gives none. The README's error table is
 * checked against this list by a test, so a code cannot be added undocumented.
 */
export const ERROR_CODES = {
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  invalid_utf8: { status: 400, message: 'The request body is not valid UTF-8.' },
  invalid_batch: { status: 400, message: 'The request body must be a JSON array of {"id", "tenant"} objects.' },
  invalid_item: { status: 400, message: 'An item of the batch is invalid.' },
  too_many_items: { status: 400, message: 'The batch has more items than allowed.' },
  invalid_tenant: { status: 400, message: 'The tenant is invalid.' },
  too_many_tenants: { status: 400, message: 'The request names more tenants than allowed.' },
  invalid_consistency: { status: 400, message: '`consistency` must be `eventual` or `strong`.' },
  unsupported_content_type: { status: 400, message: 'A batch is a JSON array: send it as application/json (or with no Content-Type).' },
  bad_request: { status: 400, message: 'The request is malformed.' },
  unauthorized: { status: 401, message: 'This endpoint needs the cluster secret.' },
  forbidden: { status: 403, message: 'The cluster secret is wrong.' },
  not_found: { status: 404, message: 'No such route.' },
  method_not_allowed: { status: 405, message: 'This route does not take that method.' },
  body_too_large: { status: 413, message: 'The request body is larger than allowed.' },
  internal: { status: 500, message: 'Something went wrong on our side; the id finds the detail in the log.' },
  // For reads and writes alike (the forwarder words its own for each): a batch was not stored, a count not read.
  no_worker_available: { status: 503, message: 'No worker could take the request: a batch was not stored, a count not read. Try again shortly.' },
  storage_unavailable: { status: 503, message: 'The worker could not write the batch to disk; nothing was acknowledged. Try again shortly.' },
  strong_read_unavailable: { status: 503, message: 'A strong read needs every worker to persist the tenant first, and one could not. Try again shortly, or read with the default consistency.' },
  shutting_down: { status: 503, message: 'The server is shutting down.' },
  not_ready: { status: 503, message: 'The server cannot serve requests now.' },
  outcome_unknown: { status: 504, message: 'A worker may have taken the batch but did not answer in time: it may or may not be stored. Retrying is safe (an item sent twice counts once).' },
  forwarding_loop: { status: 508, message: 'The request was forwarded to a coordinator instead of a worker: a `workers` entry of the config points at a coordinator.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error meant for a client: a registered code, a message fit to show, and where relevant the first bad item. */
export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly index: number | undefined;

  constructor(code: ErrorCode, message?: string, options: { index?: number; cause?: unknown } = {}) {
    super(message ?? ERROR_CODES[code].message, { cause: options.cause });
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.index = options.index;
  }
}

/**
 * `text` ended by a period, unless it ends with one (or another sentence end) already: for
 * a message that ends a sentence with text from elsewhere (a worker's message, an error's),
 * which may or may not end with its own period — never "..".
 */
export function endSentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** The JSON body every error answer has: `{"error": {"code", "message", "id", "index"?}}`. */
export interface ErrorBody {
  error: { code: string; message: string; id: string; index?: number };
}

export function errorBody(error: AppError, id: string): ErrorBody {
  const body: ErrorBody = { error: { code: error.code, message: error.message, id } };
  if (error.index !== undefined) body.error.index = error.index;
  return body;
}
