import { Logger } from '../../shared/log.js';

/** A logger that keeps its lines (`LEVEL [id] message`) instead of printing them. */
export class MemoryLog extends Logger {
  readonly lines: string[] = [];

  constructor() {
    super('test');
  }

  override info(message: string): void {
    this.lines.push(`INFO ${message}`);
  }

  override warn(message: string, _detail?: unknown, id?: string): void {
    this.lines.push(`WARN [${id ?? ''}] ${message}`);
  }

  override error(message: string, _detail?: unknown, id = 'generated'): string {
    this.lines.push(`ERROR [${id}] ${message}`);
    return id;
  }
}
