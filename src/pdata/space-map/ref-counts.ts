/**
 * RefCounts: the in-memory reference counts of one space map, in the on-disk 2-bit
 * encoding (spec §6.1) plus an exact map for counts of 3 or more.
 *
 * Contract:
 * - `get/inc/dec/set` are O(1); `dec` of a free block throws E_CORRUPT (a double free
 *   is corruption, never silently absorbed: a tree that references a block its space
 *   map calls free is damage on disk); a count beyond 32 bits is E_RANGE.
 * - `allocate` returns a block free in BOTH the current counts and the state at the
 *   last `markCommitted()`, so a block the committed metadata still references is
 *   never reused before the next commit (the kernel's old_ll rule). Scans use the
 *   native bitmap search; single-entry get/set stay in JS because a native call
 *   costs more than the two shifts it would save.
 * - It records which bitmaps and which overflow entries changed since the last
 *   commit, for the persistence layer to write; only its own methods touch those
 *   records (`dirtyBitmapList`, `takeDirtyOverflow`, `markAllBitmapsDirty`).
 * - Read-only users (checkers) see it through SpaceMapCounts: the 2-bit bitmap
 *   entries and the overflow counts exactly as loaded, without interpretation.
 * - Memory: 2 bits per block (the counts). 2 more (the allocation state at the last
 *   commit) from the first time a block counted at a commit drops to 0 (kept from then
 *   on, for reuse); until then every block the last commit counts is still counted, so
 *   the counts alone say which blocks are free (a restore, which only adds references,
 *   never makes them). In the pages of MID_PAGE blocks that hold a block of count 3 or
 *   more: 4 bits per block while the page's counts are 3..16 (a byte per block from the
 *   first larger one) and, until the next commit, a bit per block for the overflow
 *   entries changed. Only counts of 255 and more take a map entry. So sharing by a few
 *   snapshots costs 4 to 5 bits per block where it happens, never an object per block.
 */
import { ThinError } from '../../errors';
import { hot } from '../../hot';
import { BITMAP_PAYLOAD, ENTRIES_PER_BITMAP, nrBitmaps } from './bitmap-block';

/** Blocks per page of the exact counts of 3 and more (16 KiB), and of their dirty bits (2 KiB). */
const MID_PAGE = 1 << 14;
/** The largest count a nibble page of exact counts holds (nibble 14; 15 is unused). */
const NIBBLE_COUNT_MAX = 16;

/** A nibble page of exact counts as the byte page with the same entries. */
function widenMid(page: Uint8Array): Uint8Array {
  const wide = new Uint8Array(MID_PAGE);
  for (let i = 0; i < MID_PAGE; i++) {
    const n = (page[i >>> 1] >>> ((i & 1) << 2)) & 0xf;
    wide[i] = n === 0 ? 0 : n + 2;
  }
  return wide;
}

/** A space map's counts as loaded from disk, for checkers to compare. */
export interface SpaceMapCounts {
  readonly nrBlocks: number;
  /** Blocks with a non-zero count (from the bitmaps). */
  readonly nrAllocated: number;
  /** The 2-bit bitmap entry of `b`: 0, 1, 2, or 3 for "see the overflow tree". */
  bitsGet(b: number): number;
  /** The overflow tree's count for `b`, if it has an entry. */
  overflowCount(b: number): number | undefined;
}

export class RefCounts implements SpaceMapCounts {
  nrBlocks: number;
  /** Current counts, 2 bits per block, padded to whole bitmaps. */
  private bits: Uint8Array;
  /**
   * While `tracking`: 1 (count 1) where the block is in use now OR was in use at the
   * last commit. Otherwise every block in use at the last commit is in use now, so
   * `bits` says the same and this buffer (kept for reuse, or not made yet) is stale.
   */
  private busy: Uint8Array | undefined;
  private tracking = false;
  /**
   * Exact counts of the blocks whose bitmap entry is 3, in pages of MID_PAGE blocks made
   * when a block of the page first needs one (sharing is usually local). A page starts
   * as nibbles (MID_PAGE / 2 bytes): 0 no overflow entry, n = 1..14 the count n + 2
   * (3..16). It becomes bytes (MID_PAGE bytes) once a count of the page does not fit:
   * 0 no entry, 1..254 the count (below 3 only as loaded from a damaged tree), 255 "see
   * `big`".
   */
  private readonly mid: Array<Uint8Array | undefined> = [];
  private readonly big = new Map<number, number>();
  private allocated = 0;
  private cursor = 0;
  private readonly dirtyBitmaps = new Set<number>();
  /** First block of the bitmap last added to dirtyBitmaps, or -inf; always in the set (clear it with clearDirty). */
  private lastDirtyBegin = -Infinity;
  /**
   * Per page of MID_PAGE blocks (made when first needed, dropped at the commit): a bit
   * per block, its overflow entry changed since the last commit; and how many are set.
   */
  private readonly dirtyOverflow: Array<Uint8Array | undefined> = [];
  private readonly dirtyInPage: number[] = [];
  private nDirtyOverflow = 0;

  constructor(nrBlocks: number) {
    this.nrBlocks = nrBlocks;
    this.bits = new Uint8Array(nrBitmaps(nrBlocks) * BITMAP_PAYLOAD);
  }

  get nrAllocated(): number {
    return this.allocated;
  }

  get(b: number): number {
    this.checkBlock(b);
    const v = (this.bits[b >>> 2] >>> ((b & 3) << 1)) & 3;
    // Stored high bit first: bit p is the high bit, p+1 the low bit.
    const c = ((v & 1) << 1) | (v >>> 1);
    return c === 3 ? this.overflowOf(b) : c;
  }

  /** The exact count of a block whose bitmap entry is 3 (3 when no entry was loaded: damage). */
  private overflowOf(b: number): number {
    const m = this.midOf(b);
    return m === 255 ? this.big.get(b)! : m === 0 ? 3 : m;
  }

  private setOverflow(b: number, count: number): void {
    const p = Math.floor(b / MID_PAGE);
    const nibble = count >= 3 && count <= NIBBLE_COUNT_MAX;
    let page = this.mid[p] ?? (this.mid[p] = new Uint8Array(nibble ? MID_PAGE >>> 1 : MID_PAGE));
    const i = b % MID_PAGE;
    if (page.length !== MID_PAGE) {
      if (nibble) {
        const s = (i & 1) << 2;
        page[i >>> 1] = (page[i >>> 1] & ~(0xf << s)) | ((count - 2) << s);
        return;
      }
      page = this.mid[p] = widenMid(page);
    }
    if (page[i] === 255 && count < 255) this.big.delete(b);
    if (count >= 255) this.big.set(b, count);
    page[i] = count >= 255 ? 255 : count;
  }

  private clearOverflow(b: number): void {
    const page = this.mid[Math.floor(b / MID_PAGE)];
    if (page === undefined) return;
    const i = b % MID_PAGE;
    if (page.length !== MID_PAGE) {
      page[i >>> 1] &= ~(0xf << ((i & 1) << 2));
      return;
    }
    if (page[i] === 255) this.big.delete(b);
    page[i] = 0;
  }

  /** `b`'s entry in `mid` as a byte page holds it (0 when its page was never made). */
  private midOf(b: number): number {
    const page = this.mid[Math.floor(b / MID_PAGE)];
    if (page === undefined) return 0;
    const i = b % MID_PAGE;
    if (page.length === MID_PAGE) return page[i];
    const n = (page[i >>> 1] >>> ((i & 1) << 2)) & 0xf;
    return n === 0 ? 0 : n + 2;
  }

  private markOverflowDirty(b: number): void {
    const p = Math.floor(b / MID_PAGE);
    const d = this.dirtyOverflow[p] ?? this.newDirtyPage(p);
    const i = b % MID_PAGE;
    const bit = 1 << (i & 7);
    if ((d[i >>> 3] & bit) === 0) {
      d[i >>> 3] |= bit;
      this.dirtyInPage[p]++;
      this.nDirtyOverflow++;
    }
  }

  private newDirtyPage(p: number): Uint8Array {
    while (this.dirtyInPage.length <= p) this.dirtyInPage.push(0);
    return (this.dirtyOverflow[p] = new Uint8Array(MID_PAGE >>> 3));
  }

  /**
   * Make `busy` hold the committed-or-current state (it holds the current one: see
   * `tracking`), before a block counted at the last commit may drop to 0.
   */
  private track(): void {
    const n = this.bits.length;
    const busy = this.busy !== undefined && this.busy.length === n ? this.busy : (this.busy = new Uint8Array(n));
    for (let i = 0; i < n; i++) {
      const x = this.bits[i];
      // per 2-bit pair: nonzero -> 0b10 (encoded count 1: high-bit slot 0, low-bit slot 1)
      busy[i] = ((x | (x >>> 1)) & 0x55) << 1;
    }
    this.tracking = true;
  }

  /** The 2-bit bitmap value of `b` (3 means "look in the overflow map"), without range checks. */
  bitsGet(b: number): number {
    const v = (this.bits[b >>> 2] >>> ((b & 3) << 1)) & 3;
    return ((v & 1) << 1) | (v >>> 1);
  }

  set(b: number, count: number): void {
    this.checkBlock(b);
    if (!Number.isInteger(count) || count < 0 || count > 0xffffffff) {
      throw new ThinError('E_RANGE', `reference count ${count} for block ${b} does not fit the 32 bits a space map stores`, { block: b });
    }
    const old = this.get(b);
    if (old === count) return;
    if (old === 0) this.allocated++;
    else if (count === 0) {
      if (!this.tracking) this.track();
      this.allocated--;
    }
    const small = count >= 3 ? 3 : count;
    const enc = ((small & 1) << 1) | (small >>> 1);
    const byte = b >>> 2;
    const shift = (b & 3) << 1;
    this.bits[byte] = (this.bits[byte] & ~(3 << shift)) | (enc << shift);
    if (count >= 3) this.setOverflow(b, count);
    else if (old >= 3) this.clearOverflow(b);
    if (old >= 3 || count >= 3) this.markOverflowDirty(b);
    if (count > 0 && this.tracking) this.busy![byte] |= 2 << shift; // encoded count 1
    this.markBitmapDirty(b);
  }

  private markBitmapDirty(b: number): void {
    // Consecutive changes mostly fall in one bitmap: skip the division and the Set then.
    if (b >= this.lastDirtyBegin && b < this.lastDirtyBegin + ENTRIES_PER_BITMAP) return;
    const j = Math.floor(b / ENTRIES_PER_BITMAP);
    this.dirtyBitmaps.add(j);
    this.lastDirtyBegin = j * ENTRIES_PER_BITMAP;
  }

  inc(b: number, by = 1): number {
    const n = this.get(b) + by;
    this.set(b, n);
    return n;
  }

  dec(b: number): number {
    const c = this.get(b);
    if (c === 0) throw new ThinError('E_CORRUPT', `reference count of block ${b} would drop below zero`, { block: b });
    this.set(b, c - 1);
    return c - 1;
  }

  /**
   * Allocate one block within [begin, end) free now and at the last commit, set its
   * count to 1 and return it; -1 when there is none. Searching starts at an
   * internal cursor and wraps, like the kernel's allocator.
   */
  allocate(begin = 0, end = this.nrBlocks): number {
    if (end <= begin) return -1;
    const cur = this.cursor >= begin && this.cursor < end ? this.cursor : begin;
    const busy = this.tracking ? this.busy! : this.bits;
    // The block at the cursor is usually free (sequential allocation): test it in JS
    // before paying for a native call.
    const b = ((busy[cur >>> 2] >>> ((cur & 3) << 1)) & 3) === 0 ? cur : hot.bitmapFindFree(busy, begin, end, cur);
    if (b < 0) return -1;
    // Not busy means count 0 now: make it 1 without the general set().
    const byte = b >>> 2;
    const one = 2 << ((b & 3) << 1); // count 1, encoded high bit first
    this.bits[byte] |= one;
    if (this.tracking) this.busy![byte] |= one;
    this.allocated++;
    this.markBitmapDirty(b);
    this.cursor = b + 1 < end ? b + 1 : begin;
    return b;
  }

  /** True if `b` is referenced now or by the committed state (cannot be allocated now). */
  isBusy(b: number): boolean {
    const busy = this.tracking ? this.busy! : this.bits;
    return ((busy[b >>> 2] >>> ((b & 3) << 1)) & 3) !== 0;
  }

  /** Set the allocation cursor (e.g. back to 0 for lowest-first allocation). */
  resetCursor(b = 0): void {
    this.cursor = b;
  }

  /** Counts of blocks with count 0, 1, 2 and 3+ within [begin, end). */
  histogram(begin = 0, end = this.nrBlocks): [number, number, number, number] {
    const out = new Float64Array(4);
    hot.bitmapCount(this.bits, begin, end, out);
    return [out[0], out[1], out[2], out[3]];
  }

  /** First free block index within bitmap j (in-bitmap offset), or ENTRIES_PER_BITMAP if none. */
  firstFreeIn(j: number): number {
    const begin = j * ENTRIES_PER_BITMAP;
    const end = Math.min(begin + ENTRIES_PER_BITMAP, this.nrBlocks);
    const b = end > begin ? hot.bitmapFindFree(this.bits, begin, end, begin) : -1;
    return b < 0 ? ENTRIES_PER_BITMAP : b - begin;
  }

  /** Free entries in bitmap j, kernel convention (phantom entries past nr_blocks count as free). */
  nrFreeIn(j: number): number {
    const begin = j * ENTRIES_PER_BITMAP;
    const end = Math.min(begin + ENTRIES_PER_BITMAP, this.nrBlocks);
    const [, c1, c2, c3] = this.histogram(begin, end);
    return ENTRIES_PER_BITMAP - (c1 + c2 + c3);
  }

  /** The 4080-byte payload of bitmap j (a view, not a copy). */
  bitmapPayload(j: number): Uint8Array {
    return this.bits.subarray(j * BITMAP_PAYLOAD, (j + 1) * BITMAP_PAYLOAD);
  }

  /** Load bitmap j's payload from disk bytes (no dirtiness). Call `recount()` after loading all. */
  loadPayload(j: number, payload: Uint8Array): void {
    this.bits.set(payload.subarray(0, BITMAP_PAYLOAD), j * BITMAP_PAYLOAD);
  }

  /**
   * After loading: clear entries past nr_blocks, recompute nr_allocated from the
   * bits, and make the loaded state the committed state.
   */
  recount(): void {
    const firstWholeByte = Math.ceil(this.nrBlocks / 4);
    for (let b = this.nrBlocks; b < firstWholeByte * 4; b++) this.bits[b >>> 2] &= ~(3 << ((b & 3) << 1));
    this.bits.fill(0, Math.ceil(this.nrBlocks / 4));
    const [, c1, c2, c3] = this.histogram();
    this.allocated = c1 + c2 + c3;
    this.markCommitted();
  }

  overflowCount(b: number): number | undefined {
    const m = this.midOf(b);
    return m === 0 ? undefined : m === 255 ? this.big.get(b) : m;
  }

  /** Load an exact count of 3+ from the overflow tree (no dirtiness). Call `recount()` after loading all. */
  loadOverflowCount(b: number, count: number): void {
    if (count > 0) this.setOverflow(b, count);
  }

  /** Every bitmap must be written at the next commit (a new space map: none is on disk yet). */
  markAllBitmapsDirty(): void {
    for (let j = 0; j < nrBitmaps(this.nrBlocks); j++) this.dirtyBitmaps.add(j);
  }

  /** Bitmaps changed since the last commit, in the order they first changed. */
  dirtyBitmapList(): number[] {
    return [...this.dirtyBitmaps];
  }

  /**
   * Blocks whose overflow entry must be written or removed, ascending, at most
   * about `max` of them (call again for more: [] when none is left); they are no
   * longer dirty afterwards (writing them may dirty others).
   */
  takeDirtyOverflow(max = Infinity): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.dirtyInPage.length && this.nDirtyOverflow > 0 && out.length < max; p++) {
      if (this.dirtyInPage[p] === 0) continue;
      const d = this.dirtyOverflow[p]!;
      const base = p * MID_PAGE;
      let taken = 0;
      for (let i = 0; i < d.length && out.length < max; i++) {
        let x = d[i];
        if (x === 0) continue;
        d[i] = 0;
        for (let k = 0; x !== 0; k++, x >>>= 1) if (x & 1) { out.push(base + i * 8 + k); taken++; }
      }
      this.dirtyInPage[p] -= taken;
      this.nDirtyOverflow -= taken;
    }
    return out;
  }

  /**
   * takeDirtyOverflow into `out` (at most out.length - 7 blocks, ascending), returning how
   * many: a large commit's batches then make no garbage. 0 when none is left.
   */
  takeDirtyOverflowInto(out: Float64Array): number {
    let n = 0;
    for (let p = 0; p < this.dirtyInPage.length && this.nDirtyOverflow > 0 && n + 8 <= out.length; p++) {
      if (this.dirtyInPage[p] === 0) continue;
      const d = this.dirtyOverflow[p]!;
      const base = p * MID_PAGE;
      const before = n;
      for (let i = 0; i < d.length && n + 8 <= out.length; i++) {
        let x = d[i];
        if (x === 0) continue;
        d[i] = 0;
        for (let k = 0; x !== 0; k++, x >>>= 1) if (x & 1) out[n++] = base + i * 8 + k;
      }
      this.dirtyInPage[p] -= n - before;
      this.nDirtyOverflow -= n - before;
    }
    return n;
  }

  /** The current state becomes the committed one: freed blocks become allocatable. */
  markCommitted(): void {
    // The committed state is the current one: `bits` says which blocks are busy until
    // one of them drops to 0 (see `tracking`).
    this.tracking = false;
    this.clearDirty();
  }

  /** Forget which bitmaps and overflow entries changed (they were written). */
  clearDirty(): void {
    this.dirtyBitmaps.clear();
    this.lastDirtyBegin = -Infinity;
    // Dropped, not zeroed: only a bulk change makes many pages, and then once.
    this.dirtyOverflow.length = 0;
    this.dirtyInPage.length = 0;
    this.nDirtyOverflow = 0;
  }

  /** Grow to `nrBlocks` (never shrinks). New blocks are free; new bitmaps are dirty. */
  extend(nrBlocks: number): void {
    if (nrBlocks <= this.nrBlocks) return;
    const oldBitmaps = nrBitmaps(this.nrBlocks);
    const bytes = nrBitmaps(nrBlocks) * BITMAP_PAYLOAD;
    if (bytes > this.bits.length) {
      const nb = new Uint8Array(bytes); nb.set(this.bits); this.bits = nb;
      if (this.tracking) { const nbusy = new Uint8Array(bytes); nbusy.set(this.busy!); this.busy = nbusy; }
      else this.busy = undefined; // stale: track() makes one of the new size
    }
    this.nrBlocks = nrBlocks;
    for (let j = Math.max(0, oldBitmaps - 1); j < nrBitmaps(nrBlocks); j++) this.dirtyBitmaps.add(j);
  }

  private checkBlock(b: number): void {
    if (!(b >= 0 && b < this.nrBlocks)) {
      throw new ThinError('E_CORRUPT', `block ${b} is beyond the space map (${this.nrBlocks} blocks)`, { block: b });
    }
  }
}
