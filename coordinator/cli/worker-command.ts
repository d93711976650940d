/**
 * `countapp worker --config PATH --port N [--host ADDR]`: one worker run by hand (on
 * another host, or beside the cluster with `spawn: false`). Its life is worker/standalone.ts;
 * it runs until stopped and exits itself, so the promise it returns never settles.
 */
export async function workerCommand(argv: readonly string[]): Promise<number> {
  const { main } = await import('../../worker/standalone.js');
  return main(argv);
}
