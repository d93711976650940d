/**
 * JSON Lines as CountApp writes them (write-ahead log segments, tenant files): one JSON
 * value a line, each line ended by "\n". A line is taken only once its "\n" is there, so
 * a reader never sees half a write; a line that does not parse (torn by a crash, then
 * ended by the next writer) is counted and skipped, never thrown.
 */

const NEWLINE = 0x0a;

/** Bytes of `buffer` up to and including its last "\n": the part a reader may take. */
export function completeLength(buffer: Buffer, length = buffer.length): number {
  const end = buffer.lastIndexOf(NEWLINE, length - 1);
  return end < 0 ? 0 : end + 1;
}

/**
 * Parses each complete line of `text` and hands the value on; returns how many lines did
 * not parse. `readPlain` may read a line of a known plain shape without JSON.parse (which
 * puts every short string into V8's string table): it returns the value JSON.parse would,
 * or undefined to leave the line to JSON.parse.
 */
export function parseJsonLines(text: string, onValue: (value: unknown) => void, readPlain?: (line: string) => unknown): { badLines: number } {
  let badLines = 0;
  let start = 0;
  for (let end = text.indexOf('\n'); end !== -1; start = end + 1, end = text.indexOf('\n', start)) {
    if (end === start) continue;
    const line = text.slice(start, end);
    let value = readPlain?.(line);
    if (value === undefined) {
      try {
        value = JSON.parse(line);
      } catch {
        badLines++;
        continue;
      }
    }
    onValue(value);
  }
  return { badLines };
}
