import { PARTS_HEADER } from './batch-parts.js';
import { SECRET_HEADER } from './control-secret.js';
import { ERROR_CODES, type ErrorCode } from './errors.js';
import { COMPACT_ID_MAP_TYPE } from './id-map-type.js';
import { SCHEMAS } from './openapi-schemas.js';
import { RouteTable, type Method, type RouteName, type ServerRole } from './routes.js';
import { VERSION } from './version.js';

/**
 * The OpenAPI 3.1 document of each server, built from the one route table (routes.ts:
 * paths, methods, which server has which route) and, per route, what it takes and
 * answers (below). `openapi/coordinator.json` and `openapi/worker.json` in the repository
 * are this output (a test keeps them equal: `make openapi` rewrites them), and each server
 * answers `GET /openapi.json` with its own.
 */

type Json = Record<string, unknown>;

interface Response {
  readonly description: string;
  /** Media type → schema (a components name, or an inline schema). */
  readonly content?: Record<string, string | Json>;
  readonly headers?: Json;
}

interface Operation {
  readonly summary: string;
  readonly description?: string;
  readonly parameters?: readonly Json[];
  readonly requestBody?: { readonly description: string; readonly content: Record<string, string | Json> };
  /** Needs the cluster secret (worker control routes). */
  readonly secret?: boolean;
  /** Status → answer; errors come from `errors`. */
  readonly responses: Record<string, Response>;
  /** The error codes this route answers (grouped by status into responses). */
  readonly errors?: readonly ErrorCode[];
}

const JSON_TYPE = 'application/json';
const json = (schema: string): Record<string, string> => ({ [JSON_TYPE]: schema });

const TENANT_QUERY = {
  name: 'tenant',
  in: 'query',
  required: true,
  description: 'The tenant: from `tenant=` to the next `&`; `?` and `=` may stand as they are, `&`, `#`, `%` and `+` must be percent-encoded (`+` is a space). Works for every tenant, `.` and `..` included.',
  schema: { type: 'string', minLength: 1 },
};
const TENANT_SEGMENT = {
  name: 'tenant',
  in: 'path',
  required: true,
  description: 'The tenant, one percent-encoded path segment (HTTP clients rewrite `.` and `..`: use the query form for those).',
  schema: { type: 'string', minLength: 1 },
};
const FORMAT_QUERY = {
  name: 'format',
  in: 'query',
  required: false,
  description: "`json`: prom-client's JSON form instead of the Prometheus text format.",
  schema: { enum: ['json'] },
};

/** `tenant=` once per tenant, for `GET /counts`. */
const TENANTS_QUERY = {
  name: 'tenant',
  in: 'query',
  required: true,
  description: 'A tenant, decoded as in `GET /items/count`; repeat it for each tenant (at most `max_count_tenants`).',
  schema: { type: 'array', items: { type: 'string', minLength: 1 } },
  style: 'form',
  explode: true,
};

const COUNT_DESCRIPTION = 'The count (0 for an unknown tenant). Through the coordinator it never goes down from one answer to the next.';

/** `consistency=`: the coordinator takes both; a worker answers eventual counts only (a strong read goes through the coordinator). */
function consistencyParameter(role: ServerRole): Json {
  return role === 'coordinator'
    ? { name: 'consistency', in: 'query', required: false, description: '`eventual` (the default): what the store holds now. `strong`: every batch acknowledged before the request arrived is included (every worker persists the tenant first).', schema: { enum: ['eventual', 'strong'] } }
    : { name: 'consistency', in: 'query', required: false, description: '`eventual` only: a strong read goes through the coordinator.', schema: { enum: ['eventual'] } };
}

/** What a count can meet on each server. */
function countErrors(role: ServerRole): ErrorCode[] {
  return role === 'coordinator'
    ? ['invalid_tenant', 'invalid_consistency', 'bad_request', 'no_worker_available', 'storage_unavailable', 'strong_read_unavailable', 'forwarding_loop']
    : ['invalid_tenant', 'invalid_consistency', 'bad_request', 'storage_unavailable'];
}

/** Errors a batch can meet on either server. */
const BATCH_ERRORS: readonly ErrorCode[] = ['invalid_json', 'invalid_utf8', 'invalid_batch', 'invalid_item', 'too_many_items', 'unsupported_content_type', 'body_too_large'];

/** What each route takes and answers, on the given server. */
const OPERATIONS: { readonly [N in RouteName]: (role: ServerRole) => Operation } = {
  health: (role) => role === 'coordinator'
    ? { summary: "Liveness, and the workers' rows", description: 'Answers 200 while the coordinator runs, whatever its workers do (readiness: `GET /readyz`; everything: `GET /status`).', responses: { 200: { description: 'The coordinator runs.', content: json('ClusterHealth') } } }
    : { summary: "The worker's state (the coordinator's health check)", responses: { 200: { description: 'The worker serves.', content: json('WorkerHealth') } } },
  ingest: (role) => ({
    summary: 'Add a batch of items',
    description: 'The whole batch is validated first; the first bad item is named by `index` and nothing of the batch is applied. The 200 comes once every item is durable as `durability` says. Any `Content-Type` but a form upload or media is accepted.',
    requestBody: { description: 'A JSON array of items.', content: json('Batch') },
    responses: { 200: { description: 'Every item is stored (N = items in the batch, repeats included).', content: json('Accepted') } },
    errors: role === 'coordinator' ? [...BATCH_ERRORS, 'no_worker_available', 'storage_unavailable', 'outcome_unknown', 'forwarding_loop'] : [...BATCH_ERRORS, 'storage_unavailable'],
  }),
  countByQuery: (role) => ({
    summary: "A tenant's distinct count (any tenant)",
    parameters: [TENANT_QUERY, consistencyParameter(role)],
    responses: { 200: { description: COUNT_DESCRIPTION, content: json('Count') } },
    errors: countErrors(role),
  }),
  countBySegment: (role) => ({
    summary: "A tenant's distinct count",
    parameters: [TENANT_SEGMENT, consistencyParameter(role)],
    responses: { 200: { description: COUNT_DESCRIPTION, content: json('Count') } },
    errors: countErrors(role),
  }),
  counts: (role) => ({
    summary: 'Several tenants\' distinct counts at once',
    parameters: [TENANTS_QUERY, consistencyParameter(role)],
    responses: { 200: { description: 'Each named tenant\'s count (0 for an unknown tenant).', content: json('Counts') } },
    errors: [...countErrors(role), 'too_many_tenants'],
  }),
  kill: () => ({
    summary: 'Persist, answer, exit (the coordinator stopping this worker)',
    secret: true,
    responses: { 200: { description: 'Stopping; `persisted` says whether everything acknowledged is in the store (the rest waits in the write-ahead log).', content: json('KillAnswer') } },
    errors: ['unauthorized', 'forbidden'],
  }),
  handoff: () => ({
    summary: 'Ids another worker hands over for the tenant files this one writes',
    secret: true,
    parameters: [{ name: 'wait', in: 'query', required: false, description: '`visible`: answer once every worker counts them (a strong read).', schema: { enum: ['visible'] } }],
    requestBody: {
      description: 'Tenant → ids. Workers send the compact form: each tenant followed by its ids, all separated by U+001F, tenants separated by U+001E (no id or tenant can hold a control character); a JSON object is taken too.',
      content: { [COMPACT_ID_MAP_TYPE]: { type: 'string' }, [JSON_TYPE]: 'Handoff' },
    },
    responses: { 200: { description: 'Logged here (durable); `failed` lists tenants not merged yet when `wait=visible`.', content: json('HandoffAnswer') } },
    errors: ['unauthorized', 'forbidden', 'invalid_utf8', 'invalid_json', 'invalid_batch', 'storage_unavailable'],
  }),
  batches: () => ({
    summary: "Several clients' batches from the coordinator in one request, each validated, logged and answered as if it had come alone",
    secret: true,
    parameters: [{ name: PARTS_HEADER, in: 'header', required: true, description: 'The byte lengths of the batches, comma-separated, in the order the body holds them.', schema: { type: 'string', pattern: '^[0-9]+(,[0-9]+)*$' } }],
    requestBody: { description: 'The batches (each a JSON array of items, as `POST /items` takes) one after the other.', content: { 'application/octet-stream': { type: 'string' } } },
    responses: { 200: { description: "Each batch's answer, in order: the status and body `POST /items` would have answered for it alone.", content: json('BatchAnswers') } },
    errors: ['unauthorized', 'forbidden', 'invalid_batch', 'body_too_large'],
  }),
  flush: () => ({
    summary: 'Persist these tenants now; answer once every worker counts them (a strong read)',
    secret: true,
    requestBody: { description: 'The tenants.', content: json('Flush') },
    responses: { 200: { description: 'Every named tenant is persisted and visible.', content: json('Flushed') } },
    errors: ['unauthorized', 'forbidden', 'invalid_json', 'invalid_batch', 'storage_unavailable'],
  }),
  members: () => ({
    summary: 'The live workers, for a worker the coordinator did not spawn (its share of the tenant files follows them)',
    secret: true,
    requestBody: { description: 'The live workers.', content: json('Members') },
    responses: { 200: { description: 'Taken.', content: json('MembersTaken') } },
    errors: ['unauthorized', 'forbidden', 'invalid_json', 'invalid_batch'],
  }),
  healthz: () => ({ summary: 'Liveness: the process runs', responses: { 200: { description: 'Alive.', content: json('Live') } } }),
  healthAlias: () => ({ summary: 'Liveness (the other common spelling of `/healthz`)', responses: { 200: { description: 'Alive.', content: json('Live') } } }),
  readyz: (role) => ({
    summary: 'Readiness',
    description: role === 'coordinator'
      ? 'Ready when the config is loaded and at least one worker takes requests.'
      : 'Ready when the worker takes batches: not stopping, and its write-ahead log is writable.',
    responses: { 200: { description: 'Ready.', content: json('Ready') } },
    errors: ['not_ready'],
  }),
  status: () => ({
    summary: "The cluster's state: version, config, workers, persists, request counts",
    responses: { 200: { description: 'The state now (worker fields come from each worker\'s last passing health check).', content: json('Status') } },
  }),
  metrics: (role) => ({
    summary: 'Prometheus metrics (prom-client)',
    description: role === 'coordinator'
      ? "The coordinator's metrics and, scraped at the same moment, every worker's, each series labelled `worker` (`countapp_worker_metrics_scraped` says which could be read). No tenant label."
      : 'This worker\'s metrics, every series labelled `worker`. No tenant label.',
    parameters: [FORMAT_QUERY],
    responses: {
      200: {
        description: 'Prometheus text format 0.0.4, or JSON with `format=json`.',
        content: { 'text/plain; version=0.0.4': { type: 'string' }, [JSON_TYPE]: 'MetricsJson' },
      },
    },
  }),
  openapi: () => ({ summary: "This document (this server's routes)", responses: { 200: { description: 'OpenAPI 3.1.', content: { [JSON_TYPE]: { type: 'object', required: ['openapi', 'paths'] } } } } }),
  dashboard: () => ({ summary: 'One self-refreshing page: workers, items/s and count latency', responses: { 200: { description: 'An HTML page (its chart library included).', content: { 'text/html': { type: 'string' } } } } }),
};

function schemaOf(schema: string | Json): Json {
  return typeof schema === 'string' ? { $ref: `#/components/schemas/${schema}` } : schema;
}

function contentOf(content: Record<string, string | Json>): Json {
  return Object.fromEntries(Object.entries(content).map(([type, schema]) => [type, { schema: schemaOf(schema) }]));
}

/** Error codes → one response per status, naming each code and when it happens. */
function errorResponses(codes: readonly ErrorCode[]): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: list.map((code) => `\`${code}\`: ${ERROR_CODES[code].message}`).join(' '),
      'x-error-codes': list,
      content: contentOf(json('Error')),
    };
  }
  return out;
}

const DEFAULT_RESPONSE = {
  description: 'Any other error, as JSON: 404 `not_found` (no such route), 405 `method_not_allowed` (with `Allow`), 400 `bad_request` (not valid HTTP), 500 `internal` (a bug), 503 `shutting_down` (the server is stopping; `Connection: close`).',
  content: contentOf(json('Error')),
};

function operationOf(name: RouteName, method: Method | 'HEAD', role: ServerRole): Json {
  const doc = OPERATIONS[name](role);
  const responses: Record<string, Json> = {};
  for (const [status, response] of Object.entries(doc.responses)) {
    responses[status] = method === 'HEAD'
      ? { description: `${response.description} (Headers only.)` }
      : { description: response.description, ...(response.content === undefined ? {} : { content: contentOf(response.content) }), ...(response.headers === undefined ? {} : { headers: response.headers }) };
  }
  for (const [status, response] of Object.entries(errorResponses(doc.errors ?? []))) {
    responses[status] = method === 'HEAD' ? { description: String(response.description), 'x-error-codes': response['x-error-codes'] } : response;
  }
  responses.default = method === 'HEAD' ? { description: DEFAULT_RESPONSE.description } : DEFAULT_RESPONSE;
  return {
    operationId: `${name}${method[0]}${method.slice(1).toLowerCase()}`,
    summary: method === 'HEAD' ? `${doc.summary} (headers only)` : doc.summary,
    ...(doc.description === undefined ? {} : { description: doc.description }),
    ...(doc.parameters === undefined ? {} : { parameters: doc.parameters }),
    ...(doc.requestBody === undefined || method === 'HEAD' ? {} : { requestBody: { required: true, description: doc.requestBody.description, content: contentOf(doc.requestBody.content) } }),
    ...(doc.secret === true ? { security: [{ clusterSecret: [] }] } : {}),
    responses,
  };
}

/** The OpenAPI 3.1 document of one kind of server. */
export function buildOpenApi(role: ServerRole): Json {
  const paths: Record<string, Json> = {};
  for (const [name, spec] of new RouteTable(role).entries()) {
    const item: Json = {};
    for (const method of spec.methods) {
      item[method.toLowerCase()] = operationOf(name, method, role);
      if (method === 'GET') item.head = operationOf(name, 'HEAD', role);
    }
    paths[spec.path] = item;
  }
  const coordinator = role === 'coordinator';
  return {
    openapi: '3.1.0',
    info: {
      title: coordinator ? 'CountApp coordinator' : 'CountApp worker',
      version: VERSION,
      description: [
        coordinator
          ? 'The coordinator forwards batches and counts to a random live worker, retrying on another within `forward_deadline`.'
          : 'A worker dedupes `(tenant, id)` items, logs each batch durably (write-ahead log) before its 200, and persists them to the store. The coordinator forwards to it; control routes need the cluster secret.',
        'Every path also answers with one trailing slash and its fixed parts in any letter case; HEAD is answered wherever GET is; a known path asked with another method gets 405 with `Allow`; any other path 404. Errors are always JSON (`Error`), never a stack trace.',
      ].join(' '),
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: coordinator ? 'http://127.0.0.1:5000' : 'http://127.0.0.1:5001' }],
    paths,
    components: {
      schemas: SCHEMAS,
      ...(coordinator ? {} : { securitySchemes: { clusterSecret: { type: 'apiKey', in: 'header', name: SECRET_HEADER, description: 'The secret the coordinator hands each worker over IPC at spawn: 401 without it, 403 when wrong.' } } }),
    },
  };
}

const texts = new Map<ServerRole, string>();

/** The document as served (built once per process). */
export function openApiText(role: ServerRole): string {
  let text = texts.get(role);
  if (text === undefined) {
    text = `${JSON.stringify(buildOpenApi(role), null, 2)}\n`;
    texts.set(role, text);
  }
  return text;
}

