/**
 * One seeded PRNG for the whole project (mulberry32): small, fast, and the same sequence
 * on every platform, so a seed means the same thing in a synthetic layer chain, an
 * experiment's workload, a test and a benchmark, and a failing seed can be replayed.
 * Not for anything secret.
 */
export class Mulberry32 {
  private a: number;
  constructor(readonly seed: number) {
    this.a = seed >>> 0;
  }
  /** Float in [0, 1). */
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}
