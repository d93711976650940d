import { Logger } from '../../shared/log.js';

/** A Logger that keeps its lines in memory (`LEVEL message`, `LEVEL [id] message` when the caller gave an id) instead of printing them, for unit tests. */
export class CaptureLog extends Logger {
  readonly lines: string[] = [];

  constructor() {
    super('test');
  }

  override info(message: string): void {
    this.lines.push(`INFO ${message}`);
  }

  override warn(message: string, _detail?: unknown, id?: string): void {
    this.lines.push(id === undefined ? `WARN ${message}` : `WARN [${id}] ${message}`);
  }

  override error(message: string, _detail?: unknown, id?: string): string {
    this.lines.push(id === undefined ? `ERROR ${message}` : `ERROR [${id}] ${message}`);
    return id ?? 'test';
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
