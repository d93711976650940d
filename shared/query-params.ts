import { AppError } from './errors.js';

/**
 * Query-string parameters, decoded strictly: a malformed escape in a parameter we read is
 * the client's mistake (400 `bad_request`), never a silently different value (which is
 * what URLSearchParams does, substituting U+FFFD). A value runs from `=` to the next `&`,
 * so it may hold `?` and `=` as they are; `&`, `#`, `%` and `+` must be percent-encoded
 * (`+` is a space). Parameters we do not read are never judged.
 */

/** A query-string key or value: `+` is a space, then percent-decoding; throws URIError when malformed. */
function decodeQueryPart(raw: string): string {
  const text = raw.includes('+') ? raw.replaceAll('+', ' ') : raw;
  return text.includes('%') ? decodeURIComponent(text) : text;
}

/** The key of one `key=value` pair, decoded; undefined when malformed (not a parameter we could be asked about). */
function keyOf(pair: string, eq: number): string | undefined {
  const raw = eq === -1 ? pair : pair.slice(0, eq);
  try {
    return decodeQueryPart(raw);
  } catch {
    return undefined;
  }
}

/**
 * Every value of parameter `name` in `query` (everything after the first `?`), in order;
 * `name` and `name=` give ''. Throws 400 `bad_request` when one of them is malformed.
 */
export function queryValues(query: string, name: string): string[] {
  const values: string[] = [];
  if (query === '') return values;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    if (keyOf(pair, eq) !== name) continue;
    const raw = eq === -1 ? '' : pair.slice(eq + 1);
    try {
      values.push(decodeQueryPart(raw));
    } catch (err) {
      throw new AppError('bad_request', `The ${name} parameter ${JSON.stringify(raw.slice(0, 80))} is not valid percent-encoding (UTF-8).`, { cause: err });
    }
  }
  return values;
}

/** `query` without any `name` parameter, every other pair exactly as it came (to pass a request on, minus what was handled here). */
export function withoutParam(query: string, name: string): string {
  if (query === '') return query;
  return query.split('&').filter((pair) => keyOf(pair, pair.indexOf('=')) !== name).join('&');
}
