import { Logger } from '../../shared/log.js';

/** A Logger that keeps its lines in memory (`LEVEL message`) instead of printing them, for unit tests. */
export class CaptureLog extends Logger {
  readonly lines: string[] = [];

  constructor() {
    super('test');
  }

  override info(message: string): void {
    this.lines.push(`INFO ${message}`);
  }

  override warn(message: string): void {
    this.lines.push(`WARN ${message}`);
  }

  override error(message: string, _detail?: unknown, id = 'test'): string {
    this.lines.push(`ERROR ${message}`);
    return id;
  }

  /** The lines that match `pattern`. */
  matching(pattern: RegExp): string[] {
    return this.lines.filter((line) => pattern.test(line));
  }

  /** Everything logged so far, one line each. */
  text(): string {
    return this.lines.join('\n');
  }
}
