/**
 * The `content-type` of a hand-over between workers in the compact form of
 * worker/store/id-map.ts (shared: the worker's OpenAPI document names it too).
 */
export const COMPACT_ID_MAP_TYPE = 'application/x-countapp-id-map';
