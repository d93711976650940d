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
