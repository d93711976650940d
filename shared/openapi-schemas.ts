import { ERROR_CODES } from './errors.js';

/**
 * The JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of every body the servers take
 * and answer, for the OpenAPI document (openapi.ts). Each is written once here; the
 * routes refer to them by name.
 */

type Schema = Record<string, unknown>;

const int = { type: 'integer', minimum: 0 } as const;
const nullable = (schema: Schema): Schema => ({ anyOf: [schema, { type: 'null' }] });
const isoTime = { type: 'string', format: 'date-time' } as const;

/** A worker's state in the coordinator's rows (see the README's list of states). */
const WORKER_STATES = ['starting', 'up', 'suspect', 'down', 'backing-off', 'stopping', 'stopped'];

/** What a persist round did, as the worker's health and the coordinator's status both show it (worker/persister.ts RoundResult). */
const ROUND_OUTCOME = {
  tenants: { ...int, description: 'Tenants the round took ids of, the failed ones included.' },
  ids: { ...int, description: 'Ids persisted (not those of failed tenants, which stay pending).' },
  failedTenants: { ...int, description: 'Tenants whose ids could not be persisted: they stay pending and in the write-ahead log.' },
  ok: { type: 'boolean', description: 'Everything persisted (no failed tenant) and checkpointed, and the sealed log segments were deleted.' },
} as const;

export const SCHEMAS: Record<string, Schema> = {
  Error: {
    type: 'object',
    description: 'Every error answer. `id` finds the log line with the detail (its `errorId`).',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message', 'id'],
        properties: {
          code: { type: 'string', enum: Object.keys(ERROR_CODES) },
          message: { type: 'string' },
          id: { type: 'string', pattern: '^[0-9a-f]{12}$' },
          index: { ...int, description: 'The first bad item of a batch (invalid_item).' },
        },
      },
    },
  },
  Item: {
    type: 'object',
    description: 'Keys match in any letter case; extra keys are ignored. No control characters or lone surrogates.',
    required: ['id', 'tenant'],
    properties: { id: { type: 'string', minLength: 1 }, tenant: { type: 'string', minLength: 1 } },
  },
  Batch: { type: 'array', items: { $ref: '#/components/schemas/Item' }, description: 'At most `max_batch_items` items; the body at most `max_body_bytes`.' },
  Accepted: { type: 'object', required: ['accepted'], properties: { accepted: { ...int, description: 'Items in the batch, repeats included.' } } },
  Count: { type: 'object', required: ['count'], properties: { count: { ...int, description: 'Distinct ids of the tenant.' } } },
  Live: { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } },
  Ready: {
    type: 'object',
    required: ['ready'],
    properties: { ready: { const: true }, liveWorkers: { ...int, description: 'Coordinator: workers taking requests now.' } },
  },
  WalStatus: {
    type: 'object',
    required: ['segment', 'bytes', 'lost'],
    properties: { segment: int, bytes: { ...int, description: 'Bytes in the current segment.' }, lost: { type: 'boolean', description: 'The log was deleted or moved: batches are refused until it is recreated.' } },
  },
  PersistRound: {
    type: 'object',
    required: ['at', 'tenants', 'ids', 'failedTenants', 'ok', 'ms'],
    properties: {
      at: { type: 'number', description: 'When it ended (epoch ms).' },
      ...ROUND_OUTCOME,
      adopted: int,
      ms: { type: 'number', minimum: 0 },
    },
  },
  WorkerHealth: {
    type: 'object',
    description: "A worker's `GET /`: what the coordinator's health checks read.",
    required: ['status', 'worker', 'durability', 'pending', 'pendingTenants', 'wal', 'walBytes', 'store'],
    properties: {
      status: { const: 'ok' },
      worker: { type: 'string' },
      durability: { enum: ['fsync', 'write', 'off'] },
      pending: { ...int, description: 'Ids acknowledged, not yet handed to the store.' },
      pendingTenants: int,
      persisting: { ...int, description: 'Ids a round or flush is persisting now.' },
      wal: { $ref: '#/components/schemas/WalStatus' },
      walBytes: { ...int, description: 'Bytes of every write-ahead log segment on disk.' },
      lastPersist: { $ref: '#/components/schemas/PersistRound' },
      store: { type: 'object', required: ['kind'], properties: { kind: { type: 'string' } } },
    },
  },
  LastExit: {
    type: 'object',
    required: ['at', 'code', 'signal', 'reason'],
    properties: { at: isoTime, code: nullable({ type: 'integer' }), signal: nullable({ type: 'string' }), reason: { type: 'string' } },
  },
  WorkerRow: {
    type: 'object',
    description: "One worker as the supervisor drives it (the coordinator's `GET /`).",
    required: ['id', 'url', 'local', 'state', 'pid', 'uptime', 'restarts', 'lastExit', 'nextRespawnAt', 'health'],
    properties: {
      id: { type: 'string' },
      url: { type: 'string' },
      local: { type: 'boolean' },
      state: { enum: WORKER_STATES },
      pid: nullable(int),
      uptime: nullable({ type: 'number' }),
      restarts: int,
      lastExit: nullable({ $ref: '#/components/schemas/LastExit' }),
      nextRespawnAt: nullable(isoTime),
      health: nullable({ type: 'object', required: ['at', 'answer'], properties: { at: isoTime, answer: {} } }),
    },
  },
  ClusterHealth: {
    type: 'object',
    description: 'Liveness of the coordinator and its workers\' rows; readiness is `GET /readyz`, the whole picture `GET /status`.',
    required: ['status', 'workers'],
    properties: { status: { const: 'ok' }, workers: { type: 'array', items: { $ref: '#/components/schemas/WorkerRow' } } },
  },
  WorkerStatus: {
    type: 'object',
    required: ['id', 'url', 'local', 'state', 'pid', 'uptime', 'restarts', 'lastExit', 'nextRespawnAt', 'checkedAt', 'pendingIds', 'tenants', 'walBytes', 'lastPersist'],
    properties: {
      id: { type: 'string' },
      url: { type: 'string' },
      local: { type: 'boolean', description: 'Spawned by this coordinator; false: a remote worker, only health-checked.' },
      state: { enum: WORKER_STATES },
      pid: nullable(int),
      uptime: nullable({ type: 'number', description: 'Seconds since the running process was ready.' }),
      restarts: int,
      lastExit: nullable({ $ref: '#/components/schemas/LastExit' }),
      nextRespawnAt: nullable(isoTime),
      checkedAt: nullable({ ...isoTime, description: 'The last health check that passed; the fields below are from its answer.' }),
      durability: nullable({ enum: ['fsync', 'write', 'off'] }),
      pendingIds: nullable(int),
      pendingTenants: nullable(int),
      tenants: nullable({ ...int, description: 'Tenants whose ids the worker holds (the tenant files it writes).' }),
      walBytes: nullable(int),
      walLost: nullable({ type: 'boolean' }),
      lastPersist: nullable({
        type: 'object',
        description: "The worker's last persist round (see PersistRound).",
        required: ['at', 'ms', 'tenants', 'ids', 'failedTenants', 'ok'],
        properties: { at: isoTime, ms: { type: 'number' }, ...ROUND_OUTCOME },
      }),
    },
  },
  HistoryPoint: {
    type: 'object',
    required: ['t', 'itemsPerSecond', 'countP50Ms', 'countP99Ms'],
    properties: {
      t: { type: 'number', description: 'Epoch ms at the end of the interval.' },
      itemsPerSecond: { type: 'number', minimum: 0 },
      countP50Ms: nullable({ type: 'number' }),
      countP99Ms: nullable({ type: 'number' }),
    },
  },
  Status: {
    type: 'object',
    required: ['version', 'pid', 'uptime', 'ready', 'notReadyReason', 'configFile', 'config', 'configError', 'workers', 'requests', 'itemsAccepted', 'history'],
    properties: {
      version: { type: 'string' },
      pid: int,
      uptime: { type: 'number', description: 'Seconds since the coordinator started.' },
      ready: { type: 'boolean' },
      notReadyReason: nullable({ type: 'string' }),
      configFile: { type: 'string' },
      config: { type: 'object', description: 'The config in force, every default filled in and every path absolute.' },
      configError: nullable({
        type: 'object',
        required: ['at', 'message'],
        properties: { at: isoTime, message: { type: 'string' } },
        description: 'Why the config file on disk was last rejected (the last good config stays in force); null once a good one is read.',
      }),
      workers: { type: 'array', items: { $ref: '#/components/schemas/WorkerStatus' } },
      requests: {
        type: 'object',
        description: "The coordinator's own answers so far: route name → status → count.",
        additionalProperties: { type: 'object', additionalProperties: int },
      },
      itemsAccepted: { ...int, description: 'Items of the batches the coordinator answered 200.' },
      history: {
        type: 'object',
        required: ['intervalSeconds', 'points'],
        properties: { intervalSeconds: { type: 'number' }, points: { type: 'array', items: { $ref: '#/components/schemas/HistoryPoint' } } },
        description: 'Items/s and count latency over the last minutes (what the dashboard draws).',
      },
    },
  },
  KillAnswer: {
    type: 'object',
    required: ['status', 'persisted', 'pending'],
    properties: { status: { const: 'stopping' }, persisted: { type: 'boolean' }, pending: int },
  },
  Handoff: { type: 'object', description: 'Tenant → ids another worker hands over.', additionalProperties: { type: 'array', items: { type: 'string' } } },
  HandoffAnswer: { type: 'object', required: ['failed'], properties: { failed: { type: 'array', items: { type: 'string' } } } },
  BatchAnswers: {
    type: 'object',
    required: ['answers'],
    properties: { answers: { type: 'array', items: { type: 'array', prefixItems: [int, { type: 'object', description: '`{"accepted": N}`, or the error (`{"error": {...}}`).' }], minItems: 2, maxItems: 2 } } },
  },
  Flush: { type: 'object', required: ['tenants'], properties: { tenants: { type: 'array', items: { type: 'string' } } } },
  Flushed: { type: 'object', required: ['flushed', 'handingOver', 'handedOverMsAgo'], properties: { flushed: int, handingOver: { type: 'boolean', description: 'Ids of these tenants were on their way to another worker: the coordinator asks every worker once more.' }, handedOverMsAgo: { type: ['number', 'null'], minimum: 0, description: 'How long ago (ms) a persist of this worker that handed ids of these tenants to another worker ended (null: none in the last 120 s). The coordinator asks every worker once more when that may have been after its read began.' } } },
  Counts: { type: 'object', required: ['counts'], properties: { counts: { type: 'object', description: 'Tenant → distinct count.', additionalProperties: int } } },
  Members: {
    type: 'object',
    required: ['members'],
    properties: { members: { type: 'array', items: { type: 'object', required: ['id', 'url'], properties: { id: { type: 'string' }, url: { type: 'string' } } } } },
  },
  MembersTaken: { type: 'object', required: ['members'], properties: { members: int } },
  MetricsJson: { type: 'array', description: "prom-client's JSON form of the metrics (`registry.getMetricsAsJSON()`).", items: { type: 'object', required: ['name', 'type', 'values'] } },
};
