import { lazyModule } from '../shared/lazy-module.js';

/**
 * undici, the forwarder's HTTP client, loaded at the first request to a worker rather
 * than at start (see lazyModule); main.ts loads it as soon as the cluster is up, so a
 * client's first request does not pay for it.
 */
export const loadUndici = lazyModule<typeof import('undici')>('undici');
