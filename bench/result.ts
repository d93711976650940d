/** One figure of the report. */
export interface Row {
  readonly section: string;
  readonly measure: string;
  /** NaN when it could not be measured. */
  readonly value: number;
  readonly unit: Unit;
  /** `>=`, `<=` or `<` than `target`; absent for figures without a target. */
  readonly target?: { readonly op: '>=' | '<=' | '<'; readonly value: number };
  readonly note?: string;
}

export type Unit = 'items/s' | 'req/s' | 'ms' | 's' | 'µs' | 'ratio' | 'MiB' | 'B' | 'count';

/** What a section hands back: its rows and the raw figures behind them (for the JSON). */
export interface SectionResult {
  readonly rows: Row[];
  readonly raw: unknown;
}

/** Shared by every section: progress lines and the harness's own problems. */
export interface Context {
  readonly progress: (line: string) => void;
  /** Something wrong with the run itself (not a missed target): the exit code becomes 1. */
  readonly problem: (message: string) => void;
}

export function passes(row: Row): boolean | undefined {
  if (row.target === undefined || Number.isNaN(row.value)) return undefined;
  switch (row.target.op) {
    case '>=': return row.value >= row.target.value;
    case '<=': return row.value <= row.target.value;
    case '<': return row.value < row.target.value;
  }
}
