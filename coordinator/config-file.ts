import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { CONFIG_KEYS, ConfigError, validateConfig, yamlSyntaxError, type Config } from '../shared/config.js';

/**
 * Reading the config file without ever stalling the coordinator: a size cap checked with
 * stat before anything is read, an asynchronous read, and the YAML parsed on a worker
 * thread with a time and memory limit. The YAML parser's cost grows faster than the text
 * (measured here: a 64 KiB mapping of many keys took 0.5 s, 1 MiB took 48 s), so no byte
 * cap alone keeps the event loop free; the thread does.
 */

/** The largest config file accepted. A real one is a few KB (256 workers listed is ~7 KB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** A config whose YAML takes longer than this to parse is refused. */
export const PARSE_TIMEOUT_MS = 5_000;
/** Heap for the parsing thread: a document that needs more is refused. */
const PARSE_HEAP_MB = 256;
const READ_CHUNK_BYTES = 64 * 1024;

/** A config file over MAX_CONFIG_BYTES. */
export class ConfigTooLargeError extends ConfigError {
  override name = 'ConfigTooLargeError';
  /** The file's size in bytes (at least, when it grew while being read). */
  readonly size: number;

  constructor(file: string, size: number) {
    super(`${file} is ${formatBytes(size)} (${size} bytes), over the ${formatBytes(MAX_CONFIG_BYTES)} limit for a config file`);
    this.size = size;
  }
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Number((bytes / 1024).toFixed(1))} KiB`;
  return `${Number((bytes / 1024 / 1024).toFixed(1))} MiB`;
}

/**
 * The text of the config file. Throws ConfigTooLargeError when it is over MAX_CONFIG_BYTES
 * (its size is checked before anything is read, and again while reading, in case it grows),
 * and the file system's own error (with its code: ENOENT, EACCES, EMFILE…) when it cannot read it.
 */
export async function readConfigFile(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size > MAX_CONFIG_BYTES) throw new ConfigTooLargeError(file, size);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(READ_CHUNK_BYTES);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > MAX_CONFIG_BYTES) throw new ConfigTooLargeError(file, total);
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await handle.close();
  }
}

/** Where the parsing thread loads the YAML parser from (the thread resolves nothing itself). */
const YAML_MODULE = createRequire(import.meta.url).resolve('yaml');

/**
 * Runs in the thread: parses `text` and posts the document back (or the parser's message).
 * Unknown keys travel without their values, which are ignored anyway: a huge one is not
 * copied back to the event loop.
 */
const PARSER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { parse } = require(workerData.yamlModule);
let answer;
try {
  const document = parse(workerData.text, { prettyErrors: true });
  if (document !== null && typeof document === 'object' && !Array.isArray(document)) {
    const known = new Set(workerData.knownKeys);
    for (const key of Object.keys(document)) if (!known.has(key)) document[key] = null;
  }
  answer = { ok: true, document };
} catch (err) {
  answer = { ok: false, message: err instanceof Error ? err.message : String(err) };
}
try {
  parentPort.postMessage(answer);
} catch (err) {
  parentPort.postMessage({ ok: false, message: 'the document cannot be handed over: ' + (err instanceof Error ? err.message : String(err)) });
}
`;

type ParserAnswer = { readonly ok: true; readonly document: unknown } | { readonly ok: false; readonly message: string };

/** Parses YAML on a worker thread; rejects with ConfigError when it is not YAML, too slow or too big. */
function parseYamlOffThread(text: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const thread = new Worker(PARSER_SOURCE, {
      eval: true,
      workerData: { yamlModule: YAML_MODULE, text, knownKeys: [...CONFIG_KEYS] },
      resourceLimits: { maxOldGenerationSizeMb: PARSE_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    let settled = false;
    const settle = (action: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      action();
      // Its answer is in; whatever it still does is not needed.
      thread.terminate().catch(() => {});
    };
    const timer = setTimeout(() => {
      settle(() => reject(new ConfigError(`The config took more than ${PARSE_TIMEOUT_MS / 1000} s to parse (${formatBytes(Buffer.byteLength(text))}); simplify it`)));
    }, PARSE_TIMEOUT_MS);
    thread.once('message', (answer: ParserAnswer) => {
      settle(() => (answer.ok ? resolve(answer.document) : reject(yamlSyntaxError(answer.message))));
    });
    thread.once('error', (err: Error & { code?: string }) => {
      settle(() => reject(
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new ConfigError(`The config needs more than ${PARSE_HEAP_MB} MB to parse; simplify it`, undefined, { cause: err })
          : err,
      ));
    });
    thread.once('exit', (code) => {
      settle(() => reject(new Error(`the config parsing thread exited (code ${code}) without an answer`)));
    });
  });
}

/** At most this many warnings (unknown keys) are passed on for one config; the rest are counted. */
const MAX_WARNINGS = 10;

/**
 * Parses and validates config text like parseConfig (relative paths against `baseDir`,
 * unknown keys reported through `warn`, at most MAX_WARNINGS of them and a count of the
 * rest), with the YAML parsed off the event loop.
 */
export async function parseConfigText(text: string, baseDir: string, warn: (message: string) => void = () => {}): Promise<Config> {
  const warnings: string[] = [];
  const config = validateConfig(await parseYamlOffThread(text), baseDir, (message) => warnings.push(message));
  for (const message of warnings.slice(0, MAX_WARNINGS)) warn(message);
  if (warnings.length > MAX_WARNINGS) warn(`... and ${warnings.length - MAX_WARNINGS} more warnings like these`);
  return config;
}
