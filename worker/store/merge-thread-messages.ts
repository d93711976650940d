/** Every message between a worker and its merge thread (see merge-thread.ts). */

export type ThreadRequest =
  /** Ids to merge, in the compact form of id-map.ts (strings cross threads as one copy, a Map as many). */
  | { readonly type: 'merge'; readonly id: number; readonly chunks: readonly string[]; readonly stopBy?: number }
  | { readonly type: 'own'; readonly id: number; readonly shards: readonly number[] | null }
  | { readonly type: 'stale'; readonly id: number; readonly ms: number }
  | { readonly type: 'deadline'; readonly id: number; readonly at: number }
  | { readonly type: 'repair'; readonly id: number }
  | { readonly type: 'checkpoint'; readonly id: number; readonly sync: boolean }
  | { readonly type: 'close'; readonly id: number };

/** An error as it crosses the thread boundary. */
export interface ThreadError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly file?: string;
}

export type ThreadReply =
  | {
    readonly type: 'done';
    readonly id: number;
    readonly held: { readonly tenants: number; readonly ids: number };
    readonly written?: number;
    /** Tenants a merge could not write, with why. */
    readonly failed?: ReadonlyArray<readonly [string, ThreadError]>;
    /** The request failed as a whole. */
    readonly error?: ThreadError;
  }
  | { readonly type: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly message: string };
