import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './repo.js';

/**
 * vitest's globalSetup: the process tests run dist/ (the coordinator, the fixtures), so a
 * dist/ older than the sources would silently test old code. The Makefile knows what dist/
 * is built from; `make -q` asks it without building. When dist/ is stale it is rebuilt
 * here, before any test starts; when that is not possible the run stops with the reason.
 */
export function setup(): void {
  const question = make(['-q', 'dist/.built'], 'pipe');
  if (question.error !== undefined) {
    throw new Error(`cannot check that dist/ is up to date: \`make\` did not run (${question.error.message}); install GNU Make or run \`make tests\``);
  }
  if (question.status === 0) return;
  if (question.status !== 1) throw new Error(`\`make -q dist/.built\` failed (exit ${question.status}): ${question.stderr}`);
  // npm ci would replace node_modules under the running vitest: leave that to the person.
  if (isOlder(path.join(REPO_ROOT, 'node_modules', '.package-lock.json'), path.join(REPO_ROOT, 'package-lock.json'))) {
    throw new Error('node_modules/ is older than package-lock.json: run `make install` (npm ci), then the tests again');
  }
  process.stderr.write('dist/ is older than its sources: building it (make build) before the tests\n');
  const build = make(['--no-print-directory', 'build'], 'inherit');
  if (build.status !== 0) throw new Error(`dist/ is older than its sources and \`make build\` failed (exit ${build.status}); fix the build, then run the tests again`);
}

function make(args: string[], stdio: 'pipe' | 'inherit'): ReturnType<typeof spawnSync> {
  return spawnSync('make', args, { cwd: REPO_ROOT, stdio: stdio === 'pipe' ? 'pipe' : ['ignore', 'inherit', 'inherit'], encoding: 'utf8' });
}

/** True when `file` is missing or older than `than`. */
function isOlder(file: string, than: string): boolean {
  try {
    return fs.statSync(file).mtimeMs < fs.statSync(than).mtimeMs;
  } catch {
    return true;
  }
}
