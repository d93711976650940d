import { EventEmitter } from 'node:events';
import path from 'node:path';
import { watch, type ChokidarOptions, type FSWatcher } from 'chokidar';
import { ConfigError, type Config } from '../shared/config.js';
import type { Logger } from '../shared/log.js';
import { ConfigTooLargeError, parseConfigText, readConfigFile } from './config-file.js';
import { describeOwnResourceError, ownResourceErrorCode } from './resource-errors.js';

/** Events a ConfigWatcher emits. */
export interface ConfigWatcherEvents {
  /**
   * A new valid config that differs from the last one. It keeps the running values of
   * `port`, `host` and `database`, which only a restart can change.
   */
  config: [config: Config];
}

/** How a watcher is made: chokidar's `watch`, or a test's stand-in. */
export type WatchFactory = (folder: string, options: ChokidarOptions) => FSWatcher;

/** Options of a ConfigWatcher. */
export interface ConfigWatcherOptions {
  /** Absolute path of the config file. */
  readonly file: string;
  readonly log: Logger;
  /** The config the coordinator started with: the last good config until a reload replaces it. */
  readonly initial: Config;
  /** The text `initial` was parsed from, so an unchanged file is not reloaded. */
  readonly initialText: string;
  /** Makes the file watcher. @default chokidar's watch */
  readonly watch?: WatchFactory;
}

/** Why the config file on disk is not in force: it was rejected (the last good config stays). */
export interface ConfigProblem {
  /** Epoch ms of the rejection. */
  readonly at: number;
  readonly message: string;
}

const EMPTY_FILE = 'the config file is empty';

/** Keys a running coordinator cannot change: a new value is reported and ignored. */
export const RESTART_KEYS = ['port', 'host', 'database', 'store', 'secret_file', 'secret_env'] as const;

/** Watch events closer together than this are one save (editors truncate, then write). */
export const SETTLE_MS = 100;
/** A watcher that failed is made again after this, doubling up to WATCH_RETRY_MAX_MS while it keeps failing. */
export const WATCH_RETRY_FIRST_MS = 500;
export const WATCH_RETRY_MAX_MS = 10_000;
/** A read or parse that failed for the coordinator's own lack of resources is tried again this soon, whatever `config_check` says. */
export const RETRY_READ_MS = 1_000;

/**
 * Keeps the last good config of one file: watches the file (chokidar) and also re-reads
 * it every `config_check` seconds, emits 'config' for each new valid version, and reports
 * an invalid one once while the last good config stays in force. A file over the size cap
 * is refused before it is read, and parsing happens off the event loop, so no config can
 * stall the coordinator. A watcher that fails (chokidar 'error': EMFILE, ENOSPC…) is made
 * again with backoff; the periodic re-read goes on meanwhile.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  readonly #file: string;
  readonly #name: string;
  readonly #log: Logger;
  readonly #watch: WatchFactory;
  /** The last good config, as emitted (restart-only keys kept at their running values). */
  #config: Config;
  /** The last text read, good or bad: the same text again is not parsed again. */
  #lastText: string;
  #watcher: FSWatcher | undefined;
  #watchRetryMs = WATCH_RETRY_FIRST_MS;
  #watchRetryTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #settleTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** The reload running or queued; reloads run one at a time. */
  #reloads: Promise<void> = Promise.resolve();
  #reloadQueued = false;
  /** What was last reported about an unreadable file, so each problem is one log line, not one per re-read. */
  #reported: string | undefined;
  /** Why the file on disk was last rejected; cleared when a good text is read. */
  #problem: ConfigProblem | undefined;
  /** The verdict on `#lastText` (undefined: it was good), for when the file comes back to it. */
  #lastTextProblem: ConfigProblem | undefined;
  #started = false;
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: ConfigWatcherOptions) {
    super();
    this.#file = path.resolve(options.file);
    this.#name = path.basename(this.#file);
    this.#log = options.log;
    this.#watch = options.watch ?? watch;
    this.#config = options.initial;
    this.#lastText = options.initialText;
  }

  /** The config in force: the initial one or the last good reload. */
  get config(): Config {
    return this.#config;
  }

  /** Why the config file on disk was last rejected, while it is (the status route shows it). */
  get problem(): ConfigProblem | undefined {
    return this.#problem;
  }

  /** Logs a rejection of the file and remembers it for `problem`; `ofText`: the verdict is on the text (not its size). */
  #rejected(message: string, ofText = true): void {
    this.#problem = { at: Date.now(), message };
    if (ofText) this.#lastTextProblem = this.#problem;
    this.#log.error(`${this.#name} rejected: ${message}; keeping the last good config`);
  }

  /** Starts watching and re-reading; resolves once chokidar has scanned the folder (or failed to, and will retry). */
  async start(): Promise<void> {
    if (this.#started || this.#closing) return;
    this.#started = true;
    this.#schedulePoll();
    try {
      await this.#openWatcher();
    } catch (err) {
      this.#watchFailed(err);
    }
    // The file may have changed between the coordinator's first read and the watch.
    this.#reload().catch(() => {});
  }

  /** Stops watching and re-reading; waits for a reload in progress. A second call returns the same promise. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#pollTimer);
    clearTimeout(this.#settleTimer);
    clearTimeout(this.#watchRetryTimer);
    clearTimeout(this.#retryTimer);
    this.#pollTimer = undefined;
    this.#settleTimer = undefined;
    this.#watchRetryTimer = undefined;
    try {
      await this.#watcher?.close();
    } catch (err) {
      this.#log.error(`could not stop watching ${this.#file}`, err);
    }
    this.#watcher = undefined;
    try {
      await this.#reloads;
    } catch {
      // #reload never rejects; nothing to report.
    }
  }

  /** Makes the chokidar watcher; resolves on its 'ready', rejects on an 'error' before it. */
  async #openWatcher(): Promise<void> {
    // chokidar 4 has no globs, and a file replaced by rename is a new inode: watch the folder.
    const watcher = this.#watch(path.dirname(this.#file), { depth: 0, ignoreInitial: true, atomic: true });
    this.#watcher = watcher;
    watcher.on('add', (file) => this.#onEvent('add', file));
    watcher.on('change', (file) => this.#onEvent('change', file));
    watcher.on('unlink', (file) => this.#onEvent('unlink', file));
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      watcher.once('ready', () => {
        ready = true;
        resolve();
      });
      watcher.on('error', (err) => {
        if (!ready) reject(err);
        else if (this.#watcher === watcher) this.#watchFailed(err);
      });
    });
  }

  /** The watcher failed: drop it, and make a new one after a backoff. The periodic re-read is untouched. */
  #watchFailed(err: unknown): void {
    const failed = this.#watcher;
    this.#watcher = undefined;
    failed?.close().catch(() => {});
    if (this.#closing || this.#watchRetryTimer !== undefined) return;
    const code = ownResourceErrorCode(err);
    const why = code === undefined ? (err instanceof Error ? err.message : String(err)) : describeOwnResourceError(code);
    const delay = this.#watchRetryMs;
    this.#watchRetryMs = Math.min(delay * 2, WATCH_RETRY_MAX_MS);
    this.#log.error(`watching ${this.#file} failed (${why}); watching it again in ${delay / 1000} s, the periodic re-read goes on`);
    this.#watchRetryTimer = setTimeout(() => {
      this.#watchRetryTimer = undefined;
      this.#openWatcher().then(
        () => {
          this.#watchRetryMs = WATCH_RETRY_FIRST_MS;
          this.#log.info(`watching ${this.#file} again`);
          // What changed while nobody watched.
          this.#reload().catch(() => {});
        },
        (retryErr: unknown) => this.#watchFailed(retryErr),
      );
    }, delay);
    this.#watchRetryTimer.unref();
  }

  #onEvent(event: 'add' | 'change' | 'unlink', file: string): void {
    if (this.#closing || path.resolve(file) !== this.#file) return;
    if (event === 'unlink') {
      this.#reportMissing();
      return;
    }
    // Wait for the writes of one save to settle, so a half-written file is not judged.
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => {
      this.#settleTimer = undefined;
      this.#reload().catch(() => {});
    }, SETTLE_MS);
    this.#settleTimer.unref();
  }

  /** A setTimeout chain rather than setInterval, so a new `config_check` applies at the next tick. */
  #schedulePoll(): void {
    if (this.#closing) return;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined;
      // #reload never rejects; the next tick is scheduled once this read is done.
      this.#reload().then(
        () => this.#schedulePoll(),
        () => this.#schedulePoll(),
      );
    }, this.#config.config_check * 1000);
    // The HTTP server keeps the coordinator alive; re-reading alone should not.
    this.#pollTimer.unref();
  }

  /** Queues a reload; at most one waits behind the running one, as it reads the latest text anyway. */
  #reload(): Promise<void> {
    if (this.#reloadQueued) return this.#reloads;
    this.#reloadQueued = true;
    this.#reloads = this.#reloads.then(async () => {
      this.#reloadQueued = false;
      if (this.#closing) return;
      try {
        await this.#reloadNow();
      } catch (err) {
        this.#log.error(`reloading ${this.#file} failed unexpectedly; keeping the last good config`, err);
      }
    });
    return this.#reloads;
  }

  /** The file could not be judged for a passing reason (the coordinator's own EMFILE): read it again soon. */
  #retrySoon(): void {
    if (this.#closing || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#reload().catch(() => {});
    }, RETRY_READ_MS);
    this.#retryTimer.unref();
  }

  /**
   * The file is gone: said once, and shown as the config's problem. One place for both, as
   * the watcher's unlink event and the periodic re-read race to see it first (the event
   * used to log without setting the problem, and the re-read then stayed silent).
   */
  #reportMissing(): void {
    this.#reportOnce('missing', () => {
      this.#problem = { at: Date.now(), message: 'the config file was removed' };
      this.#log.warn('config file removed; keeping the last good config');
    });
  }

  /** Logs through `report` unless `key` is what was reported last. */
  #reportOnce(key: string, report: () => void): void {
    if (this.#reported === key) return;
    this.#reported = key;
    report();
  }

  async #reloadNow(): Promise<void> {
    let text: string;
    try {
      text = await readConfigFile(this.#file);
    } catch (err) {
      if (err instanceof ConfigTooLargeError) {
        this.#reportOnce(`size ${err.size}`, () => this.#rejected(err.message, false));
        return;
      }
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'ENOENT') {
        this.#reportMissing();
      } else {
        const own = ownResourceErrorCode(err);
        this.#reportOnce(`read ${code}`, () => {
          const why = `cannot read ${this.#file} (${own === undefined ? code : describeOwnResourceError(own)})`;
          this.#problem = { at: Date.now(), message: why };
          this.#log.error(`${why}; keeping the last good config`);
        });
        if (own !== undefined) this.#retrySoon();
      }
      return;
    }
    if (this.#closing || text === this.#lastText) {
      this.#reported = undefined;
      this.#problem = this.#lastTextProblem;
      return;
    }
    if (text.trim() === '') {
      // Far more likely a save caught half-way than a wish for every default: wait for content.
      if (this.#problem?.message !== EMPTY_FILE) this.#problem = { at: Date.now(), message: EMPTY_FILE };
      this.#reportOnce('empty', () => this.#log.warn(`${this.#name} is empty; keeping the last good config (write \`{}\` to ask for every default)`));
      return;
    }
    this.#reported = undefined;
    // A new text: whatever was wrong with the old one is no longer the file's problem.
    this.#problem = undefined;
    this.#lastTextProblem = undefined;

    const warnings: string[] = [];
    let next: Config;
    try {
      next = await parseConfigText(text, path.dirname(this.#file), (message) => warnings.push(message));
    } catch (err) {
      if (!(err instanceof ConfigError)) {
        // Not a verdict on the text (no thread to parse it: the coordinator's own resources): judge it again soon.
        this.#reportOnce('parse', () => this.#log.error(`cannot parse ${this.#file} now; keeping the last good config and trying again`, err));
        this.#retrySoon();
        return;
      }
      // Remembered, so a bad text is reported once, not at every re-read.
      this.#lastText = text;
      this.#rejected(err.message.replace(/[\s:]+$/, ''));
      return;
    }
    this.#lastText = text;
    if (this.#closing) return;
    for (const message of warnings) this.#log.warn(`${this.#name}: ${message}`);

    const old = this.#config;
    // The coordinator keeps its old port, so a worker may not take it even if the new file moved `port`.
    const clash = next.workers.findIndex((worker) => worker.local && worker.port === old.port);
    if (clash >= 0) {
      this.#rejected(`\`workers[${clash}]\` uses port ${old.port}, which the running coordinator listens on until it restarts`);
      return;
    }
    for (const key of RESTART_KEYS) {
      if (JSON.stringify(next[key]) !== JSON.stringify(old[key])) {
        this.#log.warn(`\`${key}\` changed from ${JSON.stringify(old[key])} to ${JSON.stringify(next[key])}: restart the coordinator for it to take effect`);
      }
    }
    const config: Config = { ...next, port: old.port, host: old.host, database: old.database, store: old.store, secret_file: old.secret_file, secret_env: old.secret_env };
    const changed = changedKeys(old, config);
    if (changed.length === 0) {
      this.#log.info(`${this.#name} re-read: nothing changed that applies without a restart`);
      return;
    }
    this.#config = config;
    this.#log.info(`${this.#name} reloaded: ${changed.join(', ')} changed`);
    try {
      this.emit('config', config);
    } catch (err) {
      this.#log.error(`a 'config' listener threw while applying ${this.#name}`, err);
    }
  }
}

function changedKeys(a: Config, b: Config): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof Config)[]);
  return [...keys].filter((key) => JSON.stringify(a[key]) !== JSON.stringify(b[key]));
}
