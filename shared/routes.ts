/**
 * The one route table of both servers. Each route is written once, here; the lean matcher
 * below serves the hot routes straight from it, and shared/http-server.ts registers the
 * others on express from it. A path matches with or without one trailing slash and with
 * its fixed parts in any letter case (as express does), and HEAD is answered wherever GET
 * is (Node sends the same status and headers without the body).
 */

export type ServerRole = 'coordinator' | 'worker';

export type Method = 'GET' | 'POST';

export interface RouteSpec {
  /** The path; `{tenant}` stands for exactly one non-empty, percent-encoded segment. */
  readonly path: string;
  /** The methods it takes; HEAD goes with GET. */
  readonly methods: readonly Method[];
  /** The servers that have it; elsewhere it is an unknown route (404). */
  readonly servers: readonly ServerRole[];
  /**
   * `hot`: matched here and handed straight to its handler (express costs ~50 µs of CPU
   * per request for its prototypes, URL parsing and layer walk): the data routes, and
   * those a cluster calls on itself (health checks, hand-overs, flushes), so a worker never
   * loads express unless a person asks it for metrics or its OpenAPI document; `express`:
   * registered on the express app, for the operations pages.
   */
  readonly lane: 'hot' | 'express';
}

export const ROUTES = {
  /** `GET /`: health, and on the coordinator the workers' state. */
  health: { path: '/', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `POST /items`: a batch. */
  ingest: { path: '/items', methods: ['POST'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET /items/count?tenant=NAME`: a count for any tenant, `.` and `..` included. */
  countByQuery: { path: '/items/count', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET /items/{tenant}/count`. */
  countBySegment: { path: '/items/{tenant}/count', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET /counts?tenant=a&tenant=b`: several tenants' counts in one answer, `{"counts": {"a": 1, "b": 2}}`. */
  counts: { path: '/counts', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET|POST /kill`: the coordinator's graceful stop of a worker (needs the cluster secret). */
  kill: { path: '/kill', methods: ['GET', 'POST'], servers: ['worker'], lane: 'hot' },
  /** `POST /internal/merge`: ids another worker hands over for tenants this one writes (needs the cluster secret). */
  handoff: { path: '/internal/merge', methods: ['POST'], servers: ['worker'], lane: 'hot' },
  /** `POST /internal/batches`: several clients' batches in one request from the coordinator, each answered on its own (needs the cluster secret). */
  batches: { path: '/internal/batches', methods: ['POST'], servers: ['worker'], lane: 'hot' },
  /** `POST /internal/flush`: persist these tenants now and answer once every worker counts them (a strong read; needs the secret). */
  flush: { path: '/internal/flush', methods: ['POST'], servers: ['worker'], lane: 'hot' },
  /** `POST /internal/members`: the live workers, for a worker the coordinator did not spawn (needs the cluster secret). */
  members: { path: '/internal/members', methods: ['POST'], servers: ['worker'], lane: 'hot' },
  /** `GET /healthz`: the process is alive (liveness). */
  healthz: { path: '/healthz', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET /health`: the same, under the other common spelling. */
  healthAlias: { path: '/health', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET /readyz`: 200 when it can serve (the coordinator: a live worker and a config), else 503 `not_ready` with the reason. */
  readyz: { path: '/readyz', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'hot' },
  /** `GET /status`: the cluster's state as JSON (workers, config, persists, request counts). */
  status: { path: '/status', methods: ['GET'], servers: ['coordinator'], lane: 'express' },
  /** `GET /metrics`: Prometheus text (prom-client); the coordinator's includes every worker's, labelled `worker`. */
  metrics: { path: '/metrics', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'express' },
  /** `GET /openapi.json`: the OpenAPI 3.1 description of this server's routes. */
  openapi: { path: '/openapi.json', methods: ['GET'], servers: ['coordinator', 'worker'], lane: 'express' },
  /** `GET /dashboard`: one self-refreshing page of the cluster's state. */
  dashboard: { path: '/dashboard', methods: ['GET'], servers: ['coordinator'], lane: 'express' },
} as const satisfies Record<string, RouteSpec>;

export type RouteName = keyof typeof ROUTES;

/** The routes one kind of server has. */
export type RouteOf<R extends ServerRole> = {
  [N in RouteName]: R extends (typeof ROUTES)[N]['servers'][number] ? N : never;
}[RouteName];

/** A request on a known route with an allowed method. */
export interface RouteMatch<N extends RouteName = RouteName> {
  readonly kind: 'route';
  readonly name: N;
  readonly spec: RouteSpec;
  /** The raw (still percent-encoded) `{tenant}` segment, for routes that have one. */
  readonly segment: string | undefined;
  /** Everything after the first `?` (empty when there is none). */
  readonly query: string;
}

/** A known route asked with a method it does not take. */
export interface MethodMismatch {
  readonly kind: 'method-not-allowed';
  readonly name: RouteName;
  /** For the Allow header: `GET, HEAD`. */
  readonly allow: string;
}

const PARAM = '{tenant}';
const SLASH = 0x2f;

/** The scheme and authority of a request target in absolute form: `http://host:port`. */
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * A request target as its path and query (origin form). HTTP/1.1 servers must accept the
 * absolute form, `GET http://host/items/t1/count` (RFC 9112 §3.2.2; proxies send it), and
 * route it by its path; Node hands it over as it came. The host named there is ignored,
 * as the Host header is. Anything else (`*`) is returned as it is: no route.
 */
function originForm(target: string): string {
  const authority = ABSOLUTE_FORM.exec(target);
  if (authority === null) return target;
  const rest = target.slice(authority[0].length);
  return rest.charCodeAt(0) === SLASH ? rest : `/${rest}`;
}

interface CompiledRoute {
  readonly name: RouteName;
  readonly spec: RouteSpec;
  readonly allow: string;
  /** Lower-case text before and after `{tenant}`, or the whole path (prefix) when it has none. */
  readonly prefix: string;
  readonly suffix: string | undefined;
}

/** `GET` → `GET, HEAD`: the Allow header's list. */
function allowOf(spec: RouteSpec): string {
  return spec.methods.flatMap((method) => (method === 'GET' ? ['GET', 'HEAD'] : [method])).join(', ');
}

function takes(spec: RouteSpec, method: string | undefined): boolean {
  if (method === 'HEAD') method = 'GET';
  return (spec.methods as readonly string[]).includes(method ?? '');
}

/** One server's routes, compiled for matching. */
export class RouteTable<R extends ServerRole = ServerRole> {
  readonly role: R;
  /** Routes without a parameter, by lower-case path. */
  readonly #fixed = new Map<string, CompiledRoute>();
  readonly #withParam: CompiledRoute[] = [];

  constructor(role: R) {
    this.role = role;
    for (const [name, spec] of Object.entries(ROUTES) as [RouteName, RouteSpec][]) {
      if (!spec.servers.includes(role)) continue;
      const at = spec.path.indexOf(PARAM);
      if (at === -1) {
        this.#fixed.set(spec.path.toLowerCase(), { name, spec, allow: allowOf(spec), prefix: spec.path.toLowerCase(), suffix: undefined });
      } else {
        if (spec.path.indexOf(PARAM, at + 1) !== -1) throw new Error(`route ${name}: one {tenant} per path`);
        this.#withParam.push({ name, spec, allow: allowOf(spec), prefix: spec.path.slice(0, at).toLowerCase(), suffix: spec.path.slice(at + PARAM.length).toLowerCase() });
      }
    }
  }

  /** The routes of this server, for registering the express ones. */
  entries(): Array<[RouteOf<R>, RouteSpec]> {
    return [...this.#fixed.values(), ...this.#withParam].map((route) => [route.name as RouteOf<R>, route.spec]);
  }

  /**
   * The route `url` names, with its raw tenant segment and query; a method mismatch when
   * the path is known but the method is not; undefined for an unknown path. A few string
   * comparisons: it runs on every request.
   */
  match(method: string | undefined, url: string): RouteMatch<RouteOf<R>> | MethodMismatch | undefined {
    if (url.charCodeAt(0) !== SLASH) url = originForm(url);
    const q = url.indexOf('?');
    let path = q === -1 ? url : url.slice(0, q);
    if (path.length > 1 && path.charCodeAt(path.length - 1) === SLASH) path = path.slice(0, -1);
    const route = this.#find(path) ?? (/[A-Z]/.test(path) ? this.#find(path, true) : undefined);
    if (route === undefined) return undefined;
    const { compiled, segment } = route;
    if (!takes(compiled.spec, method)) return { kind: 'method-not-allowed', name: compiled.name, allow: compiled.allow };
    return { kind: 'route', name: compiled.name as RouteOf<R>, spec: compiled.spec, segment, query: q === -1 ? '' : url.slice(q + 1) };
  }

  #find(path: string, anyCase = false): { compiled: CompiledRoute; segment: string | undefined } | undefined {
    const key = anyCase ? path.toLowerCase() : path;
    const fixed = this.#fixed.get(key);
    if (fixed !== undefined) return { compiled: fixed, segment: undefined };
    for (const compiled of this.#withParam) {
      const suffix = compiled.suffix!;
      const end = path.length - suffix.length;
      if (end <= compiled.prefix.length || !key.startsWith(compiled.prefix) || !key.endsWith(suffix)) continue;
      const segment = path.slice(compiled.prefix.length, end);
      if (!segment.includes('/')) return { compiled, segment };
    }
    return undefined;
  }
}
