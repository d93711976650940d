/**
 * One factor for every wall-clock upper bound in the tests. A bound is the figure the
 * README promises times this factor, so a loaded 2-core CI machine (or other tests running
 * at the same time) does not fail a test that a quiet machine passes with room to spare.
 * Real figures belong to the benchmarks; tests print what they measured (`reportTiming`).
 * Set `SLOW_MACHINE_FACTOR` in the environment for a slower machine.
 */
/** The factor when the environment does not set one. */
const DEFAULT_FACTOR = 3;

export const SLOW_MACHINE_FACTOR: number = readFactor(process.env.SLOW_MACHINE_FACTOR);

function readFactor(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return DEFAULT_FACTOR;
  const factor = Number(text);
  if (!Number.isFinite(factor) || factor < 1) {
    throw new Error(`Expected \`SLOW_MACHINE_FACTOR\` to be a number >= 1, got \`${JSON.stringify(text)}\``);
  }
  return factor;
}

/** `expected` (a figure the README states, in any unit) stretched by the slow-machine factor: the bound a test asserts. */
export function generous(expected: number): number {
  return expected * SLOW_MACHINE_FACTOR;
}

/**
 * Prints a measured figure on one line a person can find in the test output and quote in
 * the README: `[timing] <label>: <measured> <unit> (bound <bound> <unit> = <expected> × <factor>)`.
 */
export function reportTiming(label: string, measured: number | readonly number[], expected: number, unit: 's' | 'ms'): void {
  const digits = unit === 's' ? 2 : 0;
  const figures = (typeof measured === 'number' ? [measured] : measured).map((value) => value.toFixed(digits)).join(', ');
  console.log(`[timing] ${label}: ${figures} ${unit} (bound ${generous(expected).toFixed(digits)} ${unit} = ${expected} ${unit} × SLOW_MACHINE_FACTOR ${SLOW_MACHINE_FACTOR})`);
}
