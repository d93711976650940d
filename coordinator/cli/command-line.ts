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
  /** Its arguments are the worker's own to read (see worker-command.ts). */
  | { readonly kind: 'worker'; readonly argv: readonly string[] };

const DEFAULT_CONFIG = 'config.yaml';
const COMMON = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const satisfies ParseArgsConfig['options'];
const CLIENT = { ...COMMON, url: { type: 'string', short: 'u' }, json: { type: 'boolean' } } as const satisfies ParseArgsConfig['options'];
const POST = { ...CLIENT, batch: { type: 'string', short: 'b' }, concurrency: { type: 'string', short: 'j' } } as const satisfies ParseArgsConfig['options'];

/** util.parseArgs, its errors in our words: `unknown argument "--bogus"`. */
function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: O, positionals: boolean) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: positionals });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = (err as Error).message;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown argument ${JSON.stringify(/'([^']*)'/.exec(message)?.[1] ?? message)}`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unknown argument ${JSON.stringify(/'([^']*)'/.exec(message)?.[1] ?? message)}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new UsageError(message.replace(/^Option '([^']*)'/, '$1').replace(/ argument missing$/, ' needs a value'));
    throw err;
  }
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
    case 'worker':
      return { kind: 'worker', argv: rest };
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
      const args = first === 'run' ? rest : argv;
      const { values } = parse(args, COMMON, false);
      const asked = helpOrVersion(values);
      if (asked !== undefined) return asked;
      return { kind: 'run', configFile: path.resolve(values.config ?? DEFAULT_CONFIG) };
    }
  }
}
