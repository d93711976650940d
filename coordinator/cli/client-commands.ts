import { ConfigError } from '../../shared/config.js';
import { VERSION } from '../../shared/version.js';
import type { Command } from './command-line.js';
import { countCommand } from './count-command.js';
import { postCommand } from './post-command.js';
import { statusCommand } from './status-command.js';
import { coordinatorUrl } from './target.js';
import { USAGE } from './usage.js';
import { EXIT } from './usage-error.js';
import { workerCommand } from './worker-command.js';

const out = (text: string): void => { process.stdout.write(text); };
const err = (text: string): void => { process.stderr.write(text); };

/** Colors on a terminal that wants them (NO_COLOR, https://no-color.org, turns them off). */
function colorOn(stream: NodeJS.WriteStream): boolean {
  return stream.isTTY === true && process.env.NO_COLOR === undefined;
}

/**
 * Runs every command but `run` (which is the cluster itself, in main.ts) and resolves with
 * the exit code. A failure is one `countapp: ...` line on stderr, never a stack trace.
 */
export async function runClientCommand(command: Exclude<Command, { kind: 'run' }>): Promise<number> {
  try {
    switch (command.kind) {
      case 'help':
        out(`${USAGE}\n`);
        return EXIT.ok;
      case 'version':
        out(`countapp ${VERSION}\n`);
        return EXIT.ok;
      case 'worker':
        return await workerCommand(command.argv);
      case 'status':
        return await statusCommand(coordinatorUrl(command.target), { json: command.json, color: colorOn(process.stdout), out });
      case 'count':
        return await countCommand(coordinatorUrl(command.target), command.tenants, { json: command.json, out, err });
      case 'post':
        return await postCommand(coordinatorUrl(command.target), command.file, { batch: command.batch, concurrency: command.concurrency, out, err, tty: process.stderr.isTTY === true });
    }
  } catch (error) {
    const { code, path } = error as NodeJS.ErrnoException;
    // A file that cannot be read says which and why, not Node's sentence.
    const message = !(error instanceof ConfigError) && code !== undefined && path !== undefined ? `cannot read ${path} (${code})` : (error as Error).message;
    err(`countapp ${command.kind}: ${message}\n`);
    return EXIT.failed;
  }
}
