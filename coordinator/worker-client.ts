import http from 'node:http';
import type { AxiosStatic } from 'axios';
import { describeError } from '../shared/describe-error.js';
import { lazyModule } from '../shared/lazy-module.js';
import { SECRET_HEADER } from '../shared/control-secret.js';
import type { MemberInfo } from '../shared/ipc.js';
import { ownResourceErrorCode } from './resource-errors.js';

/**
 * The coordinator's two control calls to a worker, `GET /` (health) and `POST /kill`
 * (stop), with their failures sorted into the worker's and the coordinator's own. Axios,
 * not the forwarder's undici pools: these calls are rare, and a fresh connection each
 * time tests what a new client would meet.
 */

/**
 * Loaded at the first control call, after the workers are forked, not before (see
 * lazyModule). A failure to load it (no descriptor left) is that call's failure, sorted
 * like any other: inconclusive when it is the coordinator's own.
 */
const loadAxios = lazyModule<{ default: AxiosStatic }>('axios');
const axios = (): AxiosStatic => loadAxios().default;

/**
 * No keep-alive: Node's global agent keeps connections open (Node 19+), so a check would
 * ride on a connection opened before trouble began — it passed for a worker that no longer
 * accepts, and it never met the coordinator's own shortage of descriptors (CI caught it).
 */
const freshConnections = new http.Agent({ keepAlive: false });

/** The answer to one health check. */
export type HealthAnswer =
  /** 200: `body` is the worker's answer, parsed when it is JSON. */
  | { readonly kind: 'ok'; readonly body: unknown }
  /** The worker did not answer well: refused, reset, timed out, or not 200. */
  | { readonly kind: 'failed'; readonly reason: string; readonly timedOut: boolean }
  /** The coordinator could not even ask (its own EMFILE and the like): says nothing about the worker. */
  | { readonly kind: 'inconclusive'; readonly reason: string; readonly code: string };

/** How a health check is made; tests pass a fake one. */
export type HealthCheck = (url: string, options: { readonly timeoutMs: number; readonly signal: AbortSignal }) => Promise<HealthAnswer>;

function isTimeout(err: unknown): boolean {
  // Axios's codes for a timeout; read off the error so a failed load of axios is no timeout.
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ECONNABORTED' || code === 'ETIMEDOUT';
}

function parseBody(text: unknown): unknown {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** `GET <url>/`: is the worker serving? Never rejects. */
export const checkHealth: HealthCheck = async (url, { timeoutMs, signal }) => {
  try {
    const res = await axios().get<string>(`${url}/`, {
      httpAgent: freshConnections,
      timeout: timeoutMs,
      signal,
      validateStatus: () => true,
      proxy: false,
      maxRedirects: 0,
      responseType: 'text',
    });
    if (res.status === 200) return { kind: 'ok', body: parseBody(res.data) };
    return { kind: 'failed', reason: `HTTP ${res.status}`, timedOut: false };
  } catch (err) {
    const code = ownResourceErrorCode(err);
    if (code !== undefined) return { kind: 'inconclusive', reason: describeError(err), code };
    return { kind: 'failed', reason: describeError(err), timedOut: isTimeout(err) };
  }
};

/** The answer to `POST /kill`. */
export type KillAnswer =
  /**
   * 2xx: the worker is exiting; `persisted` says whether everything it had acknowledged is
   * in the store (otherwise `pending` ids wait in its write-ahead log for its next start).
   */
  | { readonly kind: 'accepted'; readonly persisted: boolean; readonly pending: number }
  /** Any other status, or no answer. */
  | { readonly kind: 'refused'; readonly reason: string };

/** A control call: `POST <url><path>` with the secret; every status is an answer. */
function controlPost(url: string, path: string, body: unknown, secret: string, options: { readonly timeoutMs: number; readonly signal: AbortSignal }) {
  return axios().post(`${url}${path}`, body, {
    httpAgent: freshConnections,
    headers: { [SECRET_HEADER]: secret },
    timeout: options.timeoutMs,
    signal: options.signal,
    validateStatus: () => true,
    proxy: false,
    maxRedirects: 0,
  });
}

/** `POST <url>/kill` with the secret: the worker persists, answers, then exits. Never rejects. */
export async function requestKill(url: string, secret: string, options: { readonly timeoutMs: number; readonly signal: AbortSignal }): Promise<KillAnswer> {
  try {
    const res = await controlPost(url, '/kill', null, secret, options);
    if (res.status >= 200 && res.status < 300) {
      const body = res.data as { persisted?: unknown; pending?: unknown } | undefined;
      return { kind: 'accepted', persisted: body?.persisted === true, pending: typeof body?.pending === 'number' ? body.pending : 0 };
    }
    return { kind: 'refused', reason: `HTTP ${res.status}` };
  } catch (err) {
    return { kind: 'refused', reason: describeError(err) };
  }
}

/** `POST <url>/internal/members` with the secret: the live membership, for a worker not spawned here. Resolves with a failure reason, or undefined. */
export async function postMembers(url: string, secret: string, members: readonly MemberInfo[], options: { readonly timeoutMs: number; readonly signal: AbortSignal }): Promise<string | undefined> {
  try {
    const res = await controlPost(url, '/internal/members', { members }, secret, options);
    return res.status === 200 ? undefined : `HTTP ${res.status}${res.status === 401 || res.status === 403 ? ' (the worker and the coordinator do not share the cluster secret: `secret_file` or `secret_env`)' : ''}`;
  } catch (err) {
    return describeError(err);
  }
}

/** `GET <url>/metrics?format=json`: the worker's metrics as prom-client's JSON; undefined when it did not answer so. Never rejects. */
export async function fetchWorkerMetrics(url: string, options: { readonly timeoutMs: number }): Promise<unknown[] | undefined> {
  try {
    const res = await axios().get<unknown>(`${url}/metrics?format=json`, {
      timeout: options.timeoutMs,
      validateStatus: () => true,
      proxy: false,
      maxRedirects: 0,
      responseType: 'json',
    });
    return res.status === 200 && Array.isArray(res.data) ? res.data : undefined;
  } catch {
    return undefined;
  }
}
