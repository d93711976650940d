import { spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';

/**
 * Makes what was written to `path` survive a power cut: fdatasync for a file's data, a
 * full fsync for a folder (so a file just created in it keeps its entry).
 */
export async function syncToDisk(path: string, kind: 'file' | 'folder'): Promise<void> {
  const handle = await open(path, 'r');
  try {
    if (kind === 'file') await handle.datasync();
    else await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The helper's loop: one `sync --file-system` of its folder (`$0`) per line read, answered
 * `ok` or `failed <what sync said>`. It ends when its input does (the worker closed it,
 * exited or was killed), after finishing a sync under way.
 */
const SYNC_LOOP = 'while read -r _; do out=$(sync --file-system -- "$0" 2>&1) && echo ok || printf \'failed %s\\n\' "$(printf %s "$out" | tr \'\\n\' \' \')"; done';

/**
 * An idle helper never keeps the worker alive (a worker that ends closes the helper's
 * input, and the shell ends); one with syncs waiting does, until it answers.
 */
function keepAlive(helper: SyncHelper, alive: boolean): void {
  for (const handle of [helper.child, helper.child.stdout] as Array<{ ref?: () => void; unref?: () => void } | null>) {
    if (alive) handle?.ref?.();
    else handle?.unref?.();
  }
}

/** The running helper and the syncs waiting for its answers, in order. */
interface SyncHelper {
  readonly child: ChildProcess;
  readonly waiting: Array<{ resolve: () => void; reject: (err: Error) => void }>;
}

/**
 * Makes everything written to the file system holding `path` survive a power cut, in one
 * call: syncfs(2), through coreutils' `sync --file-system` (Node has no binding for it).
 * One journal commit for a whole persist round, where an fsync per tenant file would
 * queue thousands of them behind each other and behind the write-ahead log's own.
 *
 * `sync` runs from one small shell kept for the purpose, not spawned by the worker each
 * time: spawning copies the whole worker's page tables (measured: 18-20 ms with 530 MB
 * resident, 150 ms the first time, ~1 ms at 44 MB), holding its memory map locked the
 * while, so every thread of the worker that touched new memory stalled with it. The shell
 * is started at the first sync and again after it ends for any reason; it forks only
 * itself, a few MB.
 */
export class FileSystemSync {
  readonly #path: string;
  #helper: SyncHelper | undefined;

  constructor(path: string) {
    this.#path = path;
  }

  /** The helper's pid while it runs (for tests). */
  get helperPid(): number | undefined {
    return this.#helper?.child.pid;
  }

  /** Resolves once a syncfs of the folder's file system has completed after this call. */
  sync(): Promise<void> {
    const helper = this.#helper ?? this.#start();
    return new Promise<void>((resolve, reject) => {
      if (helper.waiting.push({ resolve, reject }) === 1) keepAlive(helper, true);
      helper.child.stdin!.write('\n');
    });
  }

  /** Ends the helper (it finishes a sync under way); a later sync() starts another. */
  close(): void {
    this.#helper?.child.stdin!.end();
    this.#helper = undefined;
  }

  #start(): SyncHelper {
    const child = spawn('sh', ['-c', SYNC_LOOP, this.#path], { stdio: ['pipe', 'pipe', 'ignore'] });
    const helper: SyncHelper = { child, waiting: [] };
    this.#helper = helper;
    keepAlive(helper, false);
    child.stdin!.on('error', () => {}); // a helper gone: reported by 'exit' below
    let buffered = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        const waiter = helper.waiting.shift();
        if (helper.waiting.length === 0) keepAlive(helper, false);
        if (line === 'ok') waiter?.resolve();
        else waiter?.reject(new Error(`sync --file-system ${this.#path} failed: ${line.replace(/^failed /, '').trim().slice(0, 200)}`));
      }
    });
    const fail = (why: string): void => {
      if (this.#helper === helper) this.#helper = undefined;
      for (const waiter of helper.waiting.splice(0)) waiter.reject(new Error(`sync --file-system ${this.#path}: ${why}`));
    };
    child.once('error', (err) => fail(`cannot run sh (${err.message})`));
    child.once('exit', (code, signal) => fail(`its shell ended (${signal ?? `exit code ${code}`})`));
    return helper;
  }
}
