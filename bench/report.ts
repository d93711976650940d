import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { passes, type Row, type Unit } from './result.js';

/** The end of a run: a plain-text table of every figure with its target, and a JSON file of everything. */

export const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench-results');

function number(value: number, unit: Unit): string {
  if (Number.isNaN(value)) return 'n/a';
  switch (unit) {
    case 'items/s':
    case 'req/s':
    case 'count':
    case 'B':
      return Math.round(value).toLocaleString('en-US');
    case 'ms':
      return Math.abs(value) < 10 ? value.toFixed(2) : Math.abs(value) < 100 ? value.toFixed(1) : Math.round(value).toLocaleString('en-US');
    case 's':
      return value.toFixed(2);
    case 'µs':
      return value.toFixed(1);
    case 'ratio':
      return value.toFixed(2);
    case 'MiB':
      return value.toFixed(1);
  }
}

function withUnit(value: number, unit: Unit): string {
  const text = number(value, unit);
  return unit === 'ratio' || text === 'n/a' ? text : `${text} ${unit}`;
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

/** The table as text. */
export function formatTable(rows: readonly Row[], failedSections: readonly string[]): string {
  const cells = rows.map((row) => {
    const verdict = passes(row);
    return {
      section: row.section,
      measure: row.measure,
      valueOnly: withUnit(row.value, row.unit),
      note: row.note,
      target: row.target === undefined ? '' : `${row.target.op} ${withUnit(row.target.value, row.unit)}`,
      result: verdict === undefined ? (row.target === undefined ? '' : 'n/a') : verdict ? 'PASS' : 'MISS',
    };
  });
  const wMeasure = Math.max(7, ...cells.map((c) => c.measure.length));
  const wValue = Math.max(5, ...cells.map((c) => c.valueOnly.length));
  const wTarget = Math.max(6, ...cells.map((c) => c.target.length));
  const lines: string[] = [];
  const header = `  ${pad('Measure', wMeasure)}  ${pad('Value', wValue, true)}  ${pad('Target', wTarget)}  Result`;
  const rule = '-'.repeat(header.length + 2);
  lines.push(header, rule);
  let section = '';
  for (const c of cells) {
    if (c.section !== section) {
      section = c.section;
      lines.push(section);
    }
    const tail = c.note ? `  ${c.note}` : '';
    lines.push(`  ${pad(c.measure, wMeasure)}  ${pad(c.valueOnly, wValue, true)}  ${pad(c.target, wTarget)}  ${pad(c.result, 6)}${tail}`.trimEnd());
  }
  for (const failed of failedSections) lines.push(`${failed}`);
  lines.push(rule);
  const judged = rows.map(passes).filter((v): v is boolean => v !== undefined);
  lines.push(`Targets met: ${judged.filter(Boolean).length} of ${judged.length}${rows.some((r) => r.target !== undefined && passes(r) === undefined) ? ' (some could not be measured)' : ''}`);
  return lines.join('\n');
}

/** Writes bench-results/bench-<timestamp>.json and bench-results/latest.json; returns the first path. */
export function writeJson(report: Record<string, unknown>, startedAt: Date): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const file = path.join(RESULTS_DIR, `bench-${stamp}.json`);
  const text = `${JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`;
  fs.writeFileSync(file, text);
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), text);
  return file;
}
