/**
 * Space-map inspection: load a space map as it is on disk, read-only and tolerant,
 * for checkers. The space maps themselves (metadata-space-map.ts, data-space-map.ts)
 * throw at the first damaged block; a checker wants every problem and every block.
 *
 * Contract:
 * - pdata knows what a space map is made of (index block or index tree, bitmaps,
 *   overflow tree) and how each is encoded; the caller (SpaceMapReader) owns the
 *   policy: how a block is read and validated, how a tree is walked (node checks),
 *   how references to metadata blocks are counted, and where problems are reported.
 * - Every block the space map uses is handed to the caller exactly once, as a root
 *   (`refRoot`) or a plain reference (`ref`), in on-disk order.
 * - Problems in the space map's own structure (missing or extra bitmaps, overflow
 *   entries out of range or below 3, a none_free_before hint that skips a free
 *   block) are reported through `error`/`warn` and loading goes on; only when
 *   nothing sensible can be loaded is the result undefined.
 * - The result holds the counts exactly as found (bitmap entries and overflow
 *   entries side by side), without interpretation. Memory: 2 bits per block (the
 *   bitmaps as loaded), not per overflow entry:
 *   the data space map's overflow tree (one entry per block shared three times or
 *   more: it grows with the pool) is walked only when the caller asks for its
 *   entries, streaming; the metadata space map's (small: shared metadata nodes) is
 *   read at load, into 12 bytes per entry, because its nodes must be counted as
 *   metadata references before the metadata counts are compared.
 */
import type { Validator } from '../block-manager';
import type { LeafView } from '../btree/btree';
import { u32Value } from '../btree/value-type';
import { bitmapValidator, BITMAP_HEADER, ENTRIES_PER_BITMAP, nrBitmaps } from './bitmap-block';
import { INDEX_ENTRY_SIZE } from './index-entry';
import { indexEntryValue } from './index-entry-value';
import { indexBlockValidator, MAX_METADATA_BITMAPS, readIndexBlock } from './metadata-index-block';
import { hot } from '../../hot';
import { BITMAP_PAYLOAD } from './bitmap-block';
import type { SpaceMapRoot } from './sm-root';

/** A space map as found on disk (see the contract). */
export interface InspectedSpaceMap {
  readonly nrBlocks: number;
  /** Blocks with a non-zero count (from the bitmaps). */
  readonly nrAllocated: number;
  /** The 2-bit bitmap entry of `b`: 0, 1, 2, or 3 for "see the overflow tree". */
  bitsGet(b: number): number;
  /**
   * The overflow tree's entries (block, count), in the order found: ascending in a
   * sound tree. For the data space map this walks the tree now (once: a second call
   * sees nothing, as every node was already visited).
   */
  forEachOverflow(fn: (block: number, count: number) => void): void;
}

/** A kind of tree, for a checker's walk: its name in messages and its leaves' value size. */
export interface TreeKind {
  readonly name: string;
  readonly leafValueSize: number;
}

/** The data space map's index tree: bitmap number -> index entry. */
export const DATA_SM_INDEX_TREE: TreeKind = { name: 'data space map index', leafValueSize: INDEX_ENTRY_SIZE };
/** Either space map's overflow tree: block -> count of 3 or more. */
export const REF_COUNT_TREE: TreeKind = { name: 'reference count tree', leafValueSize: u32Value.size };

/** How the caller reads, walks, counts and reports (see the contract). */
export interface SpaceMapReader {
  /** Blocks on the metadata device. */
  readonly nrBlocks: number;
  /** A tree root or index block at `path`: count it and return true, or report it outside the device and return false. */
  refRoot(b: number, path: string): boolean;
  /** A reference to `b`, already known to be on the device. */
  ref(b: number): void;
  /**
   * Read and validate `b`; undefined once the failure has been reported. The bytes may
   * be reused by the next `read` (this file takes what it needs of each block first).
   */
  read(b: number, v: Validator, what: string, path: string): Uint8Array | undefined;
  /** Walk the tree at `root` (its root already counted), calling `leaf` once per distinct leaf. */
  walk(root: number, kind: TreeKind, path: string, leaf: (view: LeafView, block: number) => void): void;
  error(message: string, block?: number, path?: string): void;
  warn(message: string, block?: number, path?: string): void;
}

/** The metadata space map under `root` (spec 6.6): index block, its bitmaps, the overflow tree. */
export function inspectMetadataSpaceMap(root: SpaceMapRoot, r: SpaceMapReader): InspectedSpaceMap | undefined {
  const p = 'metadata space map';
  if (root.nrBlocks > MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP) {
    r.error(`metadata space map manages ${root.nrBlocks} blocks, more than 255 bitmaps can describe`, 0, p);
    return undefined;
  }
  const n = Math.min(root.nrBlocks, r.nrBlocks);
  if (!r.refRoot(root.bitmapRoot, `${p} > index block`)) return undefined;
  const index = r.read(root.bitmapRoot, indexBlockValidator, 'metadata index block', p);
  if (!index) return undefined;
  const counts = new LoadedBitmaps(n);
  readIndexBlock(index, nrBitmaps(n)).forEach((e, j) => loadBitmap(r, counts, j, e.blocknr, e.noneFreeBefore, `${p} > bitmap ${j}`));
  counts.recount();
  const list = new OverflowList();
  walkOverflow(r, counts.nrBlocks, root.refCountRoot, p, (b, c) => list.push(b, c));
  return view(counts, (fn) => list.forEach(fn));
}

/** The data space map under `root` (spec 6.5): index tree, its bitmaps, the overflow tree. */
export function inspectDataSpaceMap(root: SpaceMapRoot, r: SpaceMapReader): InspectedSpaceMap | undefined {
  const p = 'data space map';
  const counts = new LoadedBitmaps(root.nrBlocks);
  const want = nrBitmaps(root.nrBlocks);
  const seen = new Set<number>();
  if (!r.refRoot(root.bitmapRoot, `${p} > index tree`)) return undefined;
  r.walk(root.bitmapRoot, DATA_SM_INDEX_TREE, `${p} > index tree`, (leaf) => {
    for (let i = 0; i < leaf.count; i++) {
      const j = leaf.key(i);
      if (j >= want) { r.error(`index entry for bitmap ${j}, but ${root.nrBlocks} blocks need only ${want} bitmaps`, undefined, p); continue; }
      seen.add(j);
      const e = leaf.value(i, indexEntryValue);
      loadBitmap(r, counts, j, e.blocknr, e.noneFreeBefore, `${p} > bitmap ${j}`);
    }
  });
  // Missing bitmaps, as runs (a damaged nr_blocks can make them many).
  for (let j = 0; j < want; j++) {
    if (seen.has(j)) continue;
    let end = j;
    while (end + 1 < want && !seen.has(end + 1)) end++;
    r.error(end === j ? `bitmap ${j} is missing from the index tree` : `bitmaps ${j}..${end} (${end - j + 1}) are missing from the index tree`, root.bitmapRoot, p);
    j = end;
  }
  counts.recount();
  return view(counts, (fn) => walkOverflow(r, counts.nrBlocks, root.refCountRoot, p, fn));
}

/** The 2-bit entries of a space map's bitmaps, as loaded (the on-disk encoding). */
class LoadedBitmaps {
  readonly bits: Uint8Array;
  nrAllocated = 0;
  constructor(readonly nrBlocks: number) {
    this.bits = new Uint8Array(nrBitmaps(nrBlocks) * BITMAP_PAYLOAD);
  }

  loadPayload(j: number, payload: Uint8Array): void {
    this.bits.set(payload.subarray(0, BITMAP_PAYLOAD), j * BITMAP_PAYLOAD);
  }

  /** The count encoded for `b`: 0, 1, 2, or 3 for "see the overflow tree". */
  bitsGet(b: number): number {
    const v = (this.bits[b >>> 2] >>> ((b & 3) << 1)) & 3;
    return ((v & 1) << 1) | (v >>> 1);
  }

  /** After loading: entries past nr_blocks cleared, nr_allocated counted from the bits. */
  recount(): void {
    const firstWholeByte = Math.ceil(this.nrBlocks / 4);
    for (let b = this.nrBlocks; b < firstWholeByte * 4; b++) this.bits[b >>> 2] &= ~(3 << ((b & 3) << 1));
    this.bits.fill(0, firstWholeByte);
    const out = new Float64Array(4);
    hot.bitmapCount(this.bits, 0, this.nrBlocks, out);
    this.nrAllocated = out[1] + out[2] + out[3];
  }
}

function view(counts: LoadedBitmaps, forEachOverflow: (fn: (block: number, count: number) => void) => void): InspectedSpaceMap {
  return {
    nrBlocks: counts.nrBlocks,
    nrAllocated: counts.nrAllocated,
    bitsGet: (b) => counts.bitsGet(b),
    forEachOverflow,
  };
}

/** Overflow entries kept compactly: 8 bytes of block and 4 of count each. */
class OverflowList {
  private blocks = new Float64Array(64);
  private counts = new Uint32Array(64);
  private n = 0;

  push(b: number, c: number): void {
    if (this.n === this.blocks.length) {
      const nb = new Float64Array(this.n * 2); nb.set(this.blocks); this.blocks = nb;
      const nc = new Uint32Array(this.n * 2); nc.set(this.counts); this.counts = nc;
    }
    this.blocks[this.n] = b;
    this.counts[this.n++] = c;
  }

  forEach(fn: (block: number, count: number) => void): void {
    for (let i = 0; i < this.n; i++) fn(this.blocks[i], this.counts[i]);
  }
}

function loadBitmap(r: SpaceMapReader, counts: LoadedBitmaps, j: number, blocknr: number, noneFreeBefore: number, path: string): void {
  if (!(blocknr > 0 && blocknr < r.nrBlocks)) {
    r.error(`bitmap ${j} is at block ${blocknr}, outside the metadata device`, blocknr, path);
    return;
  }
  r.ref(blocknr);
  const d = r.read(blocknr, bitmapValidator, 'space map bitmap', path);
  if (!d) return;
  counts.loadPayload(j, d.subarray(BITMAP_HEADER));
  // The allocator never looks below none_free_before: a free block there would never be used.
  const begin = j * ENTRIES_PER_BITMAP;
  const end = Math.min(begin + noneFreeBefore, counts.nrBlocks);
  for (let b = begin; b < end; b++) {
    if (counts.bitsGet(b) === 0) {
      r.warn(`bitmap ${j}: none_free_before is ${noneFreeBefore}, but block ${b} is free (the allocator would skip it)`, blocknr, path);
      break;
    }
  }
}

/** Walk an overflow tree, reporting entries out of range or below 3, handing the others to `fn`. */
function walkOverflow(r: SpaceMapReader, nrBlocks: number, root: number, sm: string, fn: (block: number, count: number) => void): void {
  const path = `${sm} > reference count tree`;
  if (!r.refRoot(root, path)) return;
  r.walk(root, REF_COUNT_TREE, path, (leaf, b) => {
    for (let i = 0; i < leaf.count; i++) {
      const blk = leaf.key(i);
      const c = leaf.value(i, u32Value);
      if (blk >= nrBlocks) { r.error(`overflow entry for block ${blk}, beyond the ${nrBlocks} managed blocks`, b, path); continue; }
      if (c < 3) r.error(`overflow entry for block ${blk} has count ${c}; only counts of 3 or more belong there`, b, path);
      fn(blk, c);
    }
  });
}
