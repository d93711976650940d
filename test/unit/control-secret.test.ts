import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/config.js';
import { readClusterSecret } from '../../shared/control-secret.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) removeTempDir(dir);
  delete process.env.COUNTAPP_TEST_SECRET;
});

function file(content: string | Buffer): string {
  const dir = makeTempDir('countapp-secret-');
  dirs.push(dir);
  const name = path.join(dir, 'secret');
  writeFileSync(name, content, { mode: 0o600 });
  return name;
}

function refusal(config: { secret_file: string | null; secret_env: string | null }): ConfigError {
  try {
    readClusterSecret(config);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('the cluster secret', () => {
  it('is undefined when the config names none (the coordinator makes a random one)', () => {
    expect(readClusterSecret({ secret_file: null, secret_env: null })).toBeUndefined();
  });

  it('is read from the file, its trailing newline dropped', () => {
    expect(readClusterSecret({ secret_file: file('0123456789abcdef0123\n'), secret_env: null })).toBe('0123456789abcdef0123');
  });

  it('is read from the environment variable', () => {
    process.env.COUNTAPP_TEST_SECRET = 'from-the-environment-42';
    expect(readClusterSecret({ secret_file: null, secret_env: 'COUNTAPP_TEST_SECRET' })).toBe('from-the-environment-42');
  });

  it('refuses clearly: a missing file, an unset variable, a short secret, several lines, a huge file', () => {
    const dir = makeTempDir('countapp-secret-');
    dirs.push(dir);
    expect(refusal({ secret_file: path.join(dir, 'none'), secret_env: null }).message).toMatch(/cannot read the secret file .*none \(ENOENT\)/);
    expect(refusal({ secret_file: null, secret_env: 'COUNTAPP_TEST_SECRET' }).message).toMatch(/environment variable COUNTAPP_TEST_SECRET \(`secret_env`\) is not set/);
    expect(refusal({ secret_file: file('short'), secret_env: null }).message).toMatch(/at least 16 characters/);
    expect(refusal({ secret_file: file('0123456789abcdef\n0123456789abcdef'), secret_env: null }).message).toMatch(/one line/);
    expect(refusal({ secret_file: file(Buffer.alloc(10_000, 97)), secret_env: null }).message).toMatch(/over 4096 bytes/);
    const folder = path.join(dir, 'folder');
    mkdirSync(folder);
    expect(refusal({ secret_file: folder, secret_env: null }).message).toMatch(/EISDIR/);
    if (process.getuid?.() !== 0) {
      const unreadable = file('0123456789abcdef0123');
      chmodSync(unreadable, 0o000);
      expect(refusal({ secret_file: unreadable, secret_env: null }).message).toMatch(/EACCES/);
    }
  });
});
