/**
 * Tally: the checker's exact reference counts, one per block of a device, kept compact so
 * a check's memory hardly grows with the pool (issue 19: flat from 4M to 16M mappings).
 *
 * Contract:
 * - `inc(b)` adds one reference to block `b`; `get(b)` is the exact number added, for any
 *   b >= 0 (blocks at or beyond `size` are references past the end, which are damage;
 *   `beyond()` lists them in ascending order).
 * - Memory: 2 bits per block (counts 0, 1, 2, and 3 meaning "3 or more"); the part of a
 *   count above 3 lives in an overflow page of PAGE_BLOCKS blocks, made only when a block
 *   of that page first passes 3: 4 bits per block while every extra count in the page is
 *   below 15, then 16 bits; an extra count of 65535 and more also takes a map entry. So a
 *   pool without sharing costs 2 bits per data block, and one whose blocks are shared by
 *   a few devices (thin_restore never shares leaves, so each device counts) 4 bits where
 *   the sharing is, never a map entry per block.
 * - Hot loops may bump an entry in place: with `q = b >>> 2`, `s = (b & 3) << 1` and
 *   `b < fastLimit` (`size`, at most 2^32 so the shifts are exact), when `((bits[q] >>> s) & 3) < 3`, `bits[q] += 1 << s` is `inc(b)`;
 *   otherwise they call `inc(b)`.
 */

/** Blocks per overflow page (a nibble page is 8 KiB, a 16-bit page 32 KiB). */
export const PAGE_BLOCKS = 1 << 14;
const NIBBLE_MAX = 15;
const WIDE_MAX = 0xffff;

export class Tally {
  /** 2 bits per block, block b at bits (b & 3) * 2 of byte b >>> 2: its count, 3 meaning 3 or more. */
  readonly bits: Uint8Array;
  /** Per page: undefined (no count above 3 yet), nibbles (count - 3, 0..15) or 16-bit (count - 3, up to 65535). */
  private readonly pages: Array<Uint8Array | Uint16Array | undefined>;
  /** Counts above 3 + 65535, the rest of the count; and whole counts of blocks at or beyond `size`. */
  private readonly big = new Map<number, number>();

  /** Blocks below this may take the in-place bump (see the contract). */
  readonly fastLimit: number;

  constructor(readonly size: number) {
    this.fastLimit = Math.min(size, 2 ** 32);
    this.bits = new Uint8Array(Math.ceil(size / 4));
    this.pages = new Array(Math.ceil(size / PAGE_BLOCKS)).fill(undefined);
  }

  inc(b: number): void {
    if (!(b < this.size)) {
      this.big.set(b, (this.big.get(b) ?? 0) + 1);
      return;
    }
    const q = Math.floor(b / 4);
    const s = (b % 4) << 1;
    if (((this.bits[q] >>> s) & 3) < 3) {
      this.bits[q] += 1 << s;
      return;
    }
    this.incExtra(b);
  }

  get(b: number): number {
    if (!(b < this.size)) return this.big.get(b) ?? 0;
    const c = (this.bits[Math.floor(b / 4)] >>> ((b % 4) << 1)) & 3;
    return c < 3 ? c : 3 + this.extra(b);
  }

  /** Blocks at or beyond `size` that were counted (references past the end). */
  beyond(): number[] {
    return [...this.big.keys()].filter((b) => b >= this.size).sort((a, b) => a - b);
  }

  /** The count of block b (< size, entry 3) above 3. */
  private extra(b: number): number {
    const page = this.pages[Math.floor(b / PAGE_BLOCKS)];
    if (page === undefined) return 0;
    const i = b % PAGE_BLOCKS;
    if (page instanceof Uint16Array) {
      const e = page[i];
      return e < WIDE_MAX ? e : WIDE_MAX + (this.big.get(b) ?? 0);
    }
    return (page[i >>> 1] >>> ((i & 1) << 2)) & 0xf;
  }

  private incExtra(b: number): void {
    const p = Math.floor(b / PAGE_BLOCKS);
    const i = b % PAGE_BLOCKS;
    let page = this.pages[p];
    if (page === undefined) page = this.pages[p] = new Uint8Array(PAGE_BLOCKS / 2);
    if (page instanceof Uint8Array) {
      const s = (i & 1) << 2;
      const e = (page[i >>> 1] >>> s) & 0xf;
      if (e < NIBBLE_MAX) {
        page[i >>> 1] += 1 << s;
        return;
      }
      page = this.pages[p] = widen(page);
    }
    if (page[i] < WIDE_MAX) page[i]++;
    else this.big.set(b, (this.big.get(b) ?? 0) + 1);
  }
}

/** A nibble page as a 16-bit page with the same values. */
function widen(page: Uint8Array): Uint16Array {
  const wide = new Uint16Array(PAGE_BLOCKS);
  for (let i = 0; i < PAGE_BLOCKS; i++) wide[i] = (page[i >>> 1] >>> ((i & 1) << 2)) & 0xf;
  return wide;
}
