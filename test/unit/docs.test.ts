import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS } from '../../shared/config.js';
import { ERROR_CODES } from '../../shared/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const source = ['coordinator', 'worker', 'shared']
  .flatMap((dir) => readdirSync(path.join(root, dir)).filter((f) => f.endsWith('.ts')).map((f) => path.join(dir, f)))
  .filter((file) => file !== path.join('shared', 'errors.ts'))
  .map((file) => readFileSync(path.join(root, file), 'utf8'))
  .join('\n');

describe('the README and the code agree', () => {
  it.each(Object.entries(ERROR_CODES))('error code %s is documented with its status and used', (code, { status }) => {
    expect(readme).toMatch(new RegExp(`\\| ${status} \\| \`${code}\` \\|`));
    expect(source).toContain(`'${code}'`);
  });

  it.each([...CONFIG_KEYS])('config key %s is documented', (key) => {
    expect(readme).toMatch(new RegExp(`^\\| \`${key}\` \\|`, 'm'));
  });
});
