import { AppError } from './errors.js';
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

/** A query-string key or value: `+` is a space, then percent-decoding; throws URIError when malformed. */
function decodeQueryPart(raw: string): string {
  const text = raw.includes('+') ? raw.replaceAll('+', ' ') : raw;
  return text.includes('%') ? decodeURIComponent(text) : text;
}

/**
 * The `tenant` parameter of a query string (everything after the first `?`). A value runs
 * to the next `&`, so it may hold `?` and `=` as they are; `&`, `#`, `%` and `+` must be
 * percent-encoded.
 */
export function tenantFromQuery(query: string): string {
  let tenant: string | undefined;
  let seen = 0;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const rawKey = eq === -1 ? pair : pair.slice(0, eq);
    let key: string;
    try {
      key = decodeQueryPart(rawKey);
    } catch {
      continue; // some other, malformed parameter: not ours to judge
    }
    if (key !== 'tenant') continue;
    seen++;
    const rawValue = eq === -1 ? '' : pair.slice(eq + 1);
    try {
      tenant = decodeQueryPart(rawValue);
    } catch (err) {
      throw new AppError('bad_request', `The tenant parameter ${JSON.stringify(rawValue.slice(0, 80))} is not valid percent-encoding (UTF-8).`, { cause: err });
    }
  }
  if (seen === 0) throw new AppError('invalid_tenant', 'The tenant is invalid: the `tenant` query parameter is missing (GET /items/count?tenant=NAME).');
  if (seen > 1) throw new AppError('invalid_tenant', 'The tenant is invalid: give the `tenant` query parameter once.');
  return tenant!;
}

/** The tenant a matched count route names: its segment when the route has one, else its query. */
export function tenantOf(match: Pick<RouteMatch, 'segment' | 'query'>): string {
  return match.segment === undefined ? tenantFromQuery(match.query) : tenantFromSegment(match.segment);
}
