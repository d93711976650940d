import { createHash } from 'node:crypto';
import type { Config } from './config.js';

/** A live worker, as the coordinator announces the membership to every worker. */
export interface MemberInfo {
  readonly id: string;
  readonly url: string;
}

/**
 * Every message the coordinator and a worker exchange over the IPC channel. The secret
 * travels here because argv and the environment are readable by other local users.
 */
export type CoordinatorMessage =
  | { readonly type: 'init'; readonly workerId: string; readonly secret: string; readonly config: Config; readonly members: readonly MemberInfo[] }
  | { readonly type: 'config'; readonly config: Config }
  /** The live workers changed: each worker's share of the tenant files follows it. */
  | { readonly type: 'members'; readonly members: readonly MemberInfo[] };

export type WorkerMessage =
  | { readonly type: 'ready'; readonly url: string }
  | { readonly type: 'fatal'; readonly code: string; readonly message: string };

export function isCoordinatorMessage(value: unknown): value is CoordinatorMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'init' || type === 'config' || type === 'members';
}

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'ready' || type === 'fatal';
}

/**
 * A short digest of a membership, as the coordinator sends it. A worker run by hand
 * reports the digest of the membership it holds in its health answer, so the coordinator
 * sees when it missed one (it restarted, a push failed) and sends it again.
 */
export function membershipDigest(members: readonly MemberInfo[]): string {
  return createHash('sha256').update(JSON.stringify(members.map((member) => [member.id, member.url]))).digest('hex').slice(0, 16);
}

/** A parsed `{"members": [{id, url}, ...]}` body, or undefined when it is not one. */
export function parseMembers(value: unknown): MemberInfo[] | undefined {
  const members = (value as { members?: unknown } | null)?.members;
  if (!Array.isArray(members) || members.length > 4096) return undefined;
  const parsed: MemberInfo[] = [];
  for (const member of members) {
    const { id, url } = (member ?? {}) as { id?: unknown; url?: unknown };
    if (typeof id !== 'string' || typeof url !== 'string' || id === '' || !/^https?:\/\//.test(url)) return undefined;
    parsed.push({ id, url });
  }
  return parsed;
}
