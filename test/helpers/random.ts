/** A small seeded PRNG (mulberry32), so a failing case can be replayed from its printed seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Texts made from `bases` by up to `edits` random edits each (at a random place, up to 2
 * characters cut and/or one of `pieces` put in), from a seeded generator: for checking a
 * fast reader against the full parser on inputs near the shapes it takes.
 */
export function* mutatedTexts(options: { readonly seed: number; readonly count: number; readonly bases: readonly string[]; readonly pieces: readonly string[]; readonly edits: number }): Generator<string> {
  const next = seededRandom(options.seed);
  const random = (n: number): number => Math.floor(next() * n);
  for (let n = 0; n < options.count; n++) {
    let text = options.bases[random(options.bases.length)]!;
    for (let k = 1 + random(options.edits); k > 0; k--) {
      const at = random(text.length + 1);
      const cut = random(3);
      text = text.slice(0, at) + (random(2) === 0 ? options.pieces[random(options.pieces.length)] : '') + text.slice(Math.min(text.length, at + cut));
    }
    yield text;
  }
}
