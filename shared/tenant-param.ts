import { AppError } from './errors.js';
import { queryValues } from './query-params.js';
import type { RouteMatch } from './routes.js';

/**
 * The tenant a count request names, from its path segment (`/items/{tenant}/count`) or
 * its query (`/items/count?tenant=NAME`). Decoding is strict: a malformed escape is the
 * client's mistake (400 `bad_request`), never a silently different tenant (which is what
 * URLSearchParams does, substituting U+FFFD). Both servers and every form of the route
 * (GET and HEAD, with or without a trailing slash) read the tenant here.
 */

/** One percent-encoded path segment → the tenant. */
export function tenantFromSegment(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch (err) {
    throw new AppError('bad_request', `The tenant segment ${JSON.stringify(raw.slice(0, 80))} is not valid percent-encoding (UTF-8).`, { cause: err });
  }
}

/**
 * The `tenant` parameter of a query string (everything after the first `?`), given
 * exactly once. Decoded as query-params.ts says: a value may hold `?` and `=` as they
 * are; `&`, `#`, `%` and `+` must be percent-encoded.
 */
export function tenantFromQuery(query: string): string {
  const values = queryValues(query, 'tenant');
  if (values.length === 0) throw new AppError('invalid_tenant', 'The tenant is invalid: the `tenant` query parameter is missing (GET /items/count?tenant=NAME).');
  if (values.length > 1) throw new AppError('invalid_tenant', 'The tenant is invalid: give the `tenant` query parameter once.');
  return values[0]!;
}

/**
 * The tenants of a multi-tenant count (`GET /counts?tenant=a&tenant=b`): at least one, at
 * most `max` (400 `too_many_tenants`), each checked by `check` (its error names which
 * parameter); a tenant named twice is answered once. In the order given.
 */
export function tenantsFromQuery(query: string, max: number, check: (tenant: string) => string): string[] {
  const values = queryValues(query, 'tenant');
  if (values.length === 0) throw new AppError('invalid_tenant', 'The tenant is invalid: name at least one, as `tenant` query parameters (GET /counts?tenant=a&tenant=b).');
  if (values.length > max) throw new AppError('too_many_tenants', `${values.length} tenants in one request; the limit is ${max} (\`max_count_tenants\`).`);
  return [...new Set(values.map((value, i) => {
    try {
      return check(value);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      throw new AppError(err.code, `The tenant parameter number ${i + 1}: ${err.message}`, { cause: err });
    }
  }))];
}

/** The tenant a matched count route names: its segment when the route has one, else its query. */
export function tenantOf(match: Pick<RouteMatch, 'segment' | 'query'>): string {
  return match.segment === undefined ? tenantFromQuery(match.query) : tenantFromSegment(match.segment);
}
