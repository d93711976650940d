import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * A package loaded at its first use instead of at start: express, axios and undici are
 * about half of a coordinator's start-up CPU, express about a quarter of a worker's, and
 * 4 workers and the coordinator start on 2 cores at once. With `require`, not `import()`: Node
 * remembers a failed `import()` for good (a process that once ran out of file
 * descriptors would never load the package), while a failed `require` is simply tried
 * again at the next call.
 */
export function lazyModule<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(name) as T);
}
