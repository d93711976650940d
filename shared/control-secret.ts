import { readFileSync } from 'node:fs';
import { ConfigError, type Config } from './config.js';

/**
 * The header a control call (`/kill`, hand-overs, flushes, the membership) carries the
 * cluster secret in. The coordinator hands each spawned worker the secret over the IPC
 * channel (argv and the environment are readable by other local processes).
 */
export const SECRET_HEADER = 'x-countapp-secret';

/** A shorter secret is refused: it could be guessed. */
const MIN_SECRET_LENGTH = 16;
/** A secret file is read up to this size: anything bigger is not a secret file. */
const MAX_SECRET_BYTES = 4096;

/**
 * The secret the worker control routes (`/kill`, hand-overs, flushes, the membership)
 * check. Spawned workers get it over the IPC channel; workers run by hand on other hosts
 * read the same one from the file (`secret_file`) or environment variable (`secret_env`)
 * the config names. Without either, the coordinator makes a random one at each start,
 * which only the workers it spawns learn. Throws a ConfigError saying what is wrong.
 */
export function readClusterSecret(config: Pick<Config, 'secret_file' | 'secret_env'>): string | undefined {
  let text: string;
  let where: string;
  let key: 'secret_file' | 'secret_env';
  if (config.secret_file !== null) {
    key = 'secret_file';
    where = `the secret file ${config.secret_file}`;
    try {
      const bytes = readFileSync(config.secret_file);
      if (bytes.length > MAX_SECRET_BYTES) throw new ConfigError(`${where} is over ${MAX_SECRET_BYTES} bytes: is it the right file?`, key);
      text = bytes.toString('utf8');
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`cannot read ${where} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, key, { cause: err });
    }
  } else if (config.secret_env !== null) {
    key = 'secret_env';
    where = `the environment variable ${config.secret_env}`;
    const value = process.env[config.secret_env];
    if (value === undefined) throw new ConfigError(`${where} (\`secret_env\`) is not set`, key);
    text = value;
  } else {
    return undefined;
  }
  const secret = text.trim();
  if (secret.length < MIN_SECRET_LENGTH || /[\r\n]/.test(secret)) {
    throw new ConfigError(`${where} must hold one line of at least ${MIN_SECRET_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`, key);
  }
  return secret;
}
