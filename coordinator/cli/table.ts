/**
 * A table drawn with box characters, as `pm2 ls` draws its own. `color` wraps a cell's text
 * in ANSI colors (on a terminal); widths count the visible text only.
 */
export interface Cell {
  readonly text: string;
  /** ANSI SGR code, e.g. 32 (green); none when undefined. */
  readonly color?: number;
  readonly align?: 'left' | 'right';
}

export function renderTable(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<Cell | string>>, options: { readonly color: boolean }): string {
  const cells = rows.map((row) => row.map((cell): Cell => (typeof cell === 'string' ? { text: cell } : cell)));
  const widths = header.map((title, i) => Math.max(title.length, ...cells.map((row) => row[i]?.text.length ?? 0)));
  const line = (left: string, middle: string, right: string): string => `${left}${widths.map((w) => '─'.repeat(w + 2)).join(middle)}${right}`;
  const paint = (cell: Cell, width: number): string => {
    const padded = cell.align === 'right' ? cell.text.padStart(width) : cell.text.padEnd(width);
    return options.color && cell.color !== undefined ? `\u001b[${cell.color}m${padded}\u001b[0m` : padded;
  };
  const row = (values: readonly Cell[]): string => `│ ${values.map((cell, i) => paint(cell, widths[i]!)).join(' │ ')} │`;
  return [
    line('┌', '┬', '┐'),
    row(header.map((title) => ({ text: title, ...(options.color ? { color: 1 } : {}) }))),
    line('├', '┼', '┤'),
    ...cells.map(row),
    line('└', '┴', '┘'),
  ].join('\n');
}
