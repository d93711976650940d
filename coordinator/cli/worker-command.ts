import { EXIT } from './usage-error.js';

/**
 * `countapp worker --config PATH --port N`: a worker on another host.
 *
 * MERGE POINT: this build has no standalone worker yet. The Redis / remote-workers stream
 * adds worker/standalone.ts; at the merge this function's body becomes a call into it
 * (it gets the arguments after `worker`, unparsed, and returns the exit code). Nothing
 * else in the CLI needs to change.
 */
export async function workerCommand(_argv: readonly string[], err: (text: string) => void): Promise<number> {
  err('countapp worker: not available in this build (a worker on another host comes with the remote-workers support)\n');
  return EXIT.failed;
}
