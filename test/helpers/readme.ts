import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './repo.js';

/**
 * The rows of the README's Markdown table whose header row has exactly these cells (e.g.
 * `['status', 'code', 'when']`), each row as its trimmed cells, backticks kept. Throws
 * when there is no such table, so a renamed header fails the tests that rely on it.
 */
export function readmeTable(header: readonly string[]): string[][] {
  const lines = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8').split('\n');
  const start = lines.findIndex((line) => line.trim().startsWith('|') && sameCells(cells(line), header));
  if (start === -1) throw new Error(`README.md has no table with the header | ${header.join(' | ')} |`);
  const rows: string[][] = [];
  // start + 1 is the |---|---| rule.
  for (const line of lines.slice(start + 2)) {
    if (!line.trim().startsWith('|')) break;
    rows.push(cells(line));
  }
  return rows;
}

/** `code` for "`code`": the text of a cell that is one code span. */
export function codeSpan(cell: string): string {
  const match = /^`([^`]+)`$/.exec(cell);
  if (match === null) throw new Error(`expected one \`code\` span, got ${JSON.stringify(cell)}`);
  return match[1]!;
}

/** The cells of a table row; a `|` inside a code span does not split. */
function cells(line: string): string[] {
  const out: string[] = [];
  let cell = '';
  let inCode = false;
  for (const char of line.trim().replace(/^\||\|$/g, '')) {
    if (char === '`') inCode = !inCode;
    if (char === '|' && !inCode) {
      out.push(cell.trim());
      cell = '';
    } else {
      cell += char;
    }
  }
  out.push(cell.trim());
  return out;
}

function sameCells(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((cell, i) => cell === b[i]);
}

/**
 * The number the README states where `pattern` matches (its first group), so a test
 * asserts exactly the figure the README promises. Throws when the README no longer says it.
 */
export function readmeFigure(pattern: RegExp): number {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  const match = pattern.exec(text);
  const value = Number(match?.[1]);
  if (match === null || !Number.isFinite(value)) throw new Error(`README.md no longer states the figure ${pattern}`);
  return value;
}
