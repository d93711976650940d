/**
 * Runs `work` over `inputs` with at most `limit` running at once (a bounded worker pool)
 * and settles every one: the result lists each input's outcome, never rejects.
 */
export async function mapSettledLimit<T, R>(inputs: readonly T[], limit: number, work: (input: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(inputs.length);
  let next = 0;
  async function lane(): Promise<void> {
    while (next < inputs.length) {
      const index = next++;
      try {
        results[index] = { status: 'fulfilled', value: await work(inputs[index]!) };
      } catch (reason) {
        results[index] = { status: 'rejected', reason };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), inputs.length) }, lane));
  return results;
}
