import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './usage-error.js';

/** Where the client commands find the coordinator: a URL given, or a config file to read `host` and `port` from. */
export type Target = { readonly url: string } | { readonly configFile: string; readonly explicit: boolean };

/** One invocation of `countapp`, parsed. */
export type Command =
  | { readonly kind: 'run'; readonly configFile: string }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'status'; readonly target: Target; readonly json: boolean }
  | { readonly kind: 'count'; readonly target: Target; readonly json: boolean; readonly tenants: readonly string[] }
  | { readonly kind: 'post'; readonly target: Target; readonly file: string; readonly batch: number; readonly concurrency: number }
  /** Its arguments, checked here, are the worker's own to read (see worker-command.ts); `--help` is its own usage. */
  | { readonly kind: 'worker'; readonly argv: readonly string[] };

const DEFAULT_CONFIG = 'config.yaml';
const COMMON = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const satisfies ParseArgsConfig['options'];
const CLIENT = { ...COMMON, url: { type: 'string', short: 'u' }, json: { type: 'boolean' } } as const satisfies ParseArgsConfig['options'];
const POST = { ...CLIENT, batch: { type: 'string', short: 'b' }, concurrency: { type: 'string', short: 'j' } } as const satisfies ParseArgsConfig['options'];
/** worker/standalone.ts's options (it reads them again), and --version. */
const WORKER = { ...COMMON, port: { type: 'string', short: 'p' }, host: { type: 'string' } } as const satisfies ParseArgsConfig['options'];
/** The commands, for a first word that is none of them. */
const COMMANDS = ['run', 'status', 'count', 'post', 'worker'];

/**
 * util.parseArgs, its errors in our words and on one line (README: a wrong command line is
 * one `countapp: ...` line): `unknown argument "--bogus"`, `--port needs a value`.
 */
function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: O, positionals: boolean) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: positionals });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === undefined || !code.startsWith('ERR_PARSE_ARGS_')) throw err;
    throw new UsageError(usageMessage(args, (err as Error).message));
  }
}

/** One line for one of util.parseArgs's messages (some are three lines long). */
function usageMessage(args: readonly string[], message: string): string {
  const quoted = /'([^']*)'/.exec(message)?.[1];
  if (/^(Unknown option|Unexpected argument) /.test(message) && quoted !== undefined) return `unknown argument ${JSON.stringify(quoted)}`;
  // `Option '-j, --concurrency <value>' argument missing`: the long name says it.
  const name = /--[\w-]+/.exec(message)?.[0] ?? quoted;
  if (/ argument missing$/.test(message)) return `${name} needs a value`;
  // `--concurrency -1`: parseArgs takes no value that starts with a dash, in case an option
  // was meant; `--batch --json` was surely one, `-1` may have been meant as the value.
  if (/ argument is ambiguous\./.test(message)) {
    const at = args.findIndex((arg, i) => arg === quoted && args[i + 1]?.startsWith('-'));
    const next = at === -1 ? undefined : args[at + 1]!;
    return next === undefined || next.startsWith('--') ? `${name} needs a value` : `${name} needs a value: to give one that starts with a dash, write ${name}=${next}`;
  }
  if (/ does not take an argument$/.test(message)) return `${quoted ?? name} takes no value`;
  return message.split('\n')[0]!;
}

function positiveInteger(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

function targetOf(values: { config?: string; url?: string }): Target {
  if (values.url !== undefined && values.config !== undefined) throw new UsageError('give --url or --config, not both');
  if (values.url !== undefined) {
    let url: URL;
    try {
      url = new URL(values.url);
    } catch {
      throw new UsageError(`--url must be a URL like http://127.0.0.1:5000, got ${JSON.stringify(values.url)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url must be an http:// URL, got ${JSON.stringify(values.url)}`);
    return { url: url.origin + url.pathname.replace(/\/+$/, '') };
  }
  return { configFile: path.resolve(values.config ?? DEFAULT_CONFIG), explicit: values.config !== undefined };
}

/** `--help` or `--version` anywhere wins over the rest. */
function helpOrVersion(values: { help?: boolean; version?: boolean }): Command | undefined {
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };
  return undefined;
}

/** `countapp ...` → what to do. Throws UsageError for a command line that makes no sense. */
export function parseCommandLine(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  switch (first) {
    case 'worker': {
      // Checked here so that a mistake is a usage error like any other (one line, exit 2),
      // not the worker's start-up failure (exit 1).
      const { values } = parse(rest, WORKER, false);
      if (values.version === true) return { kind: 'version' };
      if (values.help !== true) {
        if (values.config === undefined || values.port === undefined) throw new UsageError('worker needs --config PATH and --port N');
        positiveInteger('port', values.port, 0, 65535);
      }
      return { kind: 'worker', argv: rest };
    }
    case 'status': {
      const { values } = parse(rest, CLIENT, false);
      const asked = helpOrVersion(values);
      if (asked !== undefined) return asked;
      return { kind: 'status', target: targetOf(values), json: values.json === true };
    }
    case 'count': {
      const { values, positionals } = parse(rest, CLIENT, true);
      const asked = helpOrVersion(values);
      if (asked !== undefined) return asked;
      if (positionals.length === 0) throw new UsageError('count needs at least one TENANT');
      return { kind: 'count', target: targetOf(values), json: values.json === true, tenants: positionals };
    }
    case 'post': {
      const { values, positionals } = parse(rest, POST, true);
      const asked = helpOrVersion(values);
      if (asked !== undefined) return asked;
      if (positionals.length !== 1) throw new UsageError(`post needs one FILE (or - for standard input), got ${positionals.length}`);
      return {
        kind: 'post',
        target: targetOf(values),
        file: positionals[0]!,
        batch: positiveInteger('batch', values.batch, 1000, 10_000_000),
        concurrency: positiveInteger('concurrency', values.concurrency, 4, 256),
      };
    }
    default: {
      if (first !== undefined && first !== 'run' && !first.startsWith('-')) throw new UsageError(`unknown command ${JSON.stringify(first)}: the commands are ${COMMANDS.join(', ')}`);
      const args = first === 'run' ? rest : argv;
      const { values } = parse(args, COMMON, false);
      const asked = helpOrVersion(values);
      if (asked !== undefined) return asked;
      return { kind: 'run', configFile: path.resolve(values.config ?? DEFAULT_CONFIG) };
    }
  }
}
