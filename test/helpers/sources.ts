import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './repo.js';

/** The product's own folders (what dist/ is built from, without the benchmarks and tests). */
const PRODUCT = ['coordinator', 'worker', 'shared'];

/** Every TypeScript source file of the product, relative to the repository root, with '/' separators. */
export function productSources(): string[] {
  return PRODUCT.flatMap((dir) => fs.readdirSync(path.join(REPO_ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => `${dir}/${name.split(path.sep).join('/')}`))
    .sort();
}

/** The text of a file, by its path relative to the repository root. */
export function readSource(file: string): string {
  return fs.readFileSync(path.join(REPO_ROOT, file), 'utf8');
}
