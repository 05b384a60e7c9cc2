// A seeded random source for the tracing's ids (TracingOptions.random, SidecarOptions.random):
// the same seed gives the same ids, so which new traces are sampled is repeatable in a test.

/** Fills a buffer from mulberry32 seeded with `seed`. */
export function seededRandom(seed: number): (into: Buffer) => void {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return (into) => {
    for (let i = 0; i < into.length; i += 4) {
      const word = next();
      for (let j = 0; j < 4 && i + j < into.length; j++) into[i + j] = (word >>> (8 * j)) & 0xff;
    }
  };
}
