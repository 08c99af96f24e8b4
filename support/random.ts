/**
 * Seeded randomness shared by the tests and the benchmarks: one PRNG (mulberry32) and one
 * pseudo-random byte pattern, so a seed means the same thing everywhere and a failing seed
 * can be replayed. Not part of the library (nothing under src/ imports support/).
 */
import { Mulberry32 } from '../src/random';

/** The project's seeded PRNG (src/random.ts) with the helpers tests and benchmarks use. */
export class Rand extends Mulberry32 {
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  /** Pick a key by weight. */
  weighted<K extends string>(w: Partial<Record<K, number>>): K {
    const entries = Object.entries(w).filter(([, v]) => (v as number) > 0) as [K, number][];
    let total = 0;
    for (const [, v] of entries) total += v;
    let x = this.next() * total;
    for (const [k, v] of entries) {
      x -= v;
      if (x < 0) return k;
    }
    return entries[entries.length - 1][0];
  }
  /** Shuffle `a` in place (Fisher-Yates) and return it. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

/**
 * Deterministic pseudo-random bytes for `seed` (mulberry32 words), fast enough for MiBs;
 * random-looking, so nothing on the way can skip zeros or compress them.
 */
export function pattern(seed: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  let a = (seed ^ 0x9e3779b9) >>> 0;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.writeUInt32LE((t ^ (t >>> 14)) >>> 0, i);
  }
  for (; i < len; i++) out[i] = (seed + i * 31 + 1) & 0xff || 1;
  return out;
}
