import { existsSync } from 'node:fs';
import { loadConfig } from '../../shared/config.js';
import type { Target } from './command-line.js';

/** Where a coordinator listens when no config says otherwise. */
export const DEFAULT_URL = 'http://127.0.0.1:5000';

/** An address to connect to for a listen address: a wildcard means this machine's loopback. */
function connectHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '[::1]';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * The coordinator's base URL: `--url` as given, or the `host` and `port` of the config
 * file (`--config`, or ./config.yaml when there is one; DEFAULT_URL when there is not).
 * Throws ConfigError when a config file named with --config cannot be read or is invalid.
 */
export function coordinatorUrl(target: Target): string {
  if ('url' in target) return target.url;
  if (!target.explicit && !existsSync(target.configFile)) return DEFAULT_URL;
  const config = loadConfig(target.configFile);
  return `http://${connectHost(config.host)}:${config.port}`;
}
