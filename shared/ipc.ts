import type { Config } from './config.js';

/**
 * Every message the coordinator and a worker exchange over the IPC channel. The secret
 * travels here because argv and the environment are readable by other local users.
 */
export type CoordinatorMessage =
  | { readonly type: 'init'; readonly workerId: string; readonly secret: string; readonly config: Config; readonly phase: number }
  | { readonly type: 'config'; readonly config: Config };

export type WorkerMessage =
  | { readonly type: 'ready'; readonly url: string }
  | { readonly type: 'fatal'; readonly code: string; readonly message: string };

export function isCoordinatorMessage(value: unknown): value is CoordinatorMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'init' || type === 'config';
}

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'ready' || type === 'fatal';
}
