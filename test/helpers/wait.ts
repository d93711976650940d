import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `predicate` every `intervalMs` (50 by default) until it is true, or throws after
 * `timeoutMs` naming `what` and the last error. A throw from the predicate counts as false.
 */
export async function waitFor(predicate: () => Promise<boolean> | boolean, timeoutMs: number, what: string, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await predicate()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const last = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    }
    await sleep(intervalMs);
  }
}
