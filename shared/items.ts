import { isUtf8 } from 'node:buffer';
import { AppError } from './errors.js';
import { readPlainBatch } from './plain-batch.js';

/** One counted thing: `id` is counted at most once per `tenant`. */
export interface Item {
  readonly id: string;
  readonly tenant: string;
}

/** The input limits, all config keys. */
export interface Limits {
  readonly max_batch_items: number;
  readonly max_id_length: number;
  readonly max_tenant_length: number;
}

// Control characters are refused: they hide in logs and terminals, and no real id needs them.
// C0, DEL and C1 (U+0080-U+009F: NEL among them, which some terminals and editors take for
// a line break). plain-batch.ts sends every such batch here (NEEDS_FULL_PARSE).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Why a value cannot be an id or a tenant, or undefined when it can. */
function problemWith(value: unknown, field: 'id' | 'tenant', maxLength: number): string | undefined {
  if (value === undefined) return `\`${field}\` is missing`;
  if (typeof value !== 'string') {
    const type = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
    return `\`${field}\` must be a string, got ${type}`;
  }
  if (value.length === 0) return `\`${field}\` must not be empty`;
  if (value.length > maxLength) return `\`${field}\` is ${value.length} characters long; the limit is ${maxLength}`;
  if (CONTROL.test(value)) return `\`${field}\` must not contain control characters`;
  // A lone surrogate has no UTF-8 form: two different ones would map to the same stored bytes.
  if (!value.isWellFormed()) return `\`${field}\` is not well-formed Unicode (lone surrogate)`;
  return undefined;
}

/** Throws `invalid_tenant` unless `tenant` is a tenant a batch could have stored. */
export function checkTenant(tenant: unknown, maxLength: number): string {
  const problem = problemWith(tenant, 'tenant', maxLength);
  if (problem !== undefined) throw new AppError('invalid_tenant', `The tenant is invalid: ${problem}.`);
  return tenant as string;
}

/** A request body as text, with a client-fit error when it is not UTF-8. */
export function bodyText(body: Buffer): string {
  if (!isUtf8(body)) throw new AppError('invalid_utf8');
  return body.toString('utf8');
}

/** Decodes a request body as UTF-8 JSON, with a client-fit error when it is not. */
export function parseJsonBody(body: Buffer): unknown {
  return parseJsonText(bodyText(body));
}

function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const detail = err instanceof SyntaxError ? ` (${err.message})` : '';
    throw new AppError('invalid_json', `The request body is not valid JSON${detail}.`, { cause: err });
  }
}

/**
 * The value of the key that matches `name` regardless of letter case (`ID`, `Tenant`), as
 * Go's encoding/json matches struct fields; the last such key wins, as there. Only called
 * when the exact key is absent, so exact-case items never pay for it.
 */
function foldedKey(item: Record<string, unknown>, name: string): unknown {
  let value: unknown;
  for (const key in item) {
    if (key.length === name.length && key.toLowerCase() === name) value = item[key];
  }
  return value;
}

/**
 * Validates a whole batch before anything of it is applied: the first bad item is
 * reported by index and nothing is stored. Extra keys in an item are ignored. Keys match
 * case-insensitively (`"ID"`, `"Tenant"`), the exact key winning when both are present;
 * such an item is replaced in the array by a plain `{id, tenant}`.
 */
export function validateBatch(value: unknown, limits: Limits): Item[] {
  if (!Array.isArray(value)) {
    const type = value === null ? 'null' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
    throw new AppError('invalid_batch', `The request body must be a JSON array of {"id", "tenant"} objects, got ${type}.`);
  }
  if (value.length > limits.max_batch_items) {
    throw new AppError('too_many_items', `The batch has ${value.length} items; the limit is ${limits.max_batch_items}.`);
  }
  for (let i = 0; i < value.length; i++) {
    const item: unknown = value[i];
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      throw new AppError('invalid_item', `Item ${i} must be an object with string \`id\` and \`tenant\`.`, { index: i });
    }
    let { id, tenant } = item as Record<string, unknown>;
    let folded = false;
    if (id === undefined || tenant === undefined) {
      // An exact key present with a bad value (null, say) stays: it is reported, not replaced.
      if (id === undefined) id = foldedKey(item as Record<string, unknown>, 'id');
      if (tenant === undefined) tenant = foldedKey(item as Record<string, unknown>, 'tenant');
      folded = true;
    }
    const problem = problemWith(id, 'id', limits.max_id_length) ?? problemWith(tenant, 'tenant', limits.max_tenant_length);
    if (problem !== undefined) throw new AppError('invalid_item', `Item ${i}: ${problem}.`, { index: i });
    if (folded) value[i] = { id, tenant };
  }
  return value as Item[];
}

/**
 * Body bytes → validated items; the one entry point both the coordinator and the workers
 * use. The common shape is read without JSON.parse (see plain-batch.ts); everything else,
 * and every bad batch, goes through JSON.parse and validateBatch.
 */
export function parseBatch(body: Buffer, limits: Limits): Item[] {
  const text = bodyText(body);
  return readPlainBatch(text, limits) ?? validateBatch(parseJsonText(text), limits);
}
