/**
 * The metadata space map (spec §6.6); see the class below and space-map.ts for the contract.
 */
import { ThinError } from '../../errors';
import { BTree } from '../btree/btree';
import { u32Value } from '../btree/value-type';
import type { MetadataAllocator, TransactionManager, WritableBlock } from '../transaction-manager';
import { bitmapValidator, BITMAP_HEADER, ENTRIES_PER_BITMAP, nrBitmaps } from './bitmap-block';
import type { IndexEntry } from './index-entry';
import { indexBlockValidator, MAX_METADATA_BITMAPS, readIndexBlock, writeIndexBlock } from './metadata-index-block';
import { RefCounts } from './ref-counts';
import { CountedSpaceMap } from './counted-space-map';
import type { SpaceMap } from './space-map';
import type { SpaceMapRoot } from './sm-root';

/** The largest metadata device the format can describe: 255 bitmaps of 16320 blocks. */
export const MAX_METADATA_BLOCKS = MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP;

/**
 * The metadata space map: counts for the metadata device's own blocks, stored in
 * bitmaps listed by a single index block, plus an overflow btree (spec §6.6).
 *
 * It counts itself, so writing it changes it. Counts live in memory for the whole
 * transaction; `commit()` materialises the changed bitmaps in rounds (allocating a
 * shadow can dirty another bitmap) until a round allocates nothing new, then writes
 * the bytes from the final counts (spec §6.6.1, "simpler equivalent").
 *
 * It is the allocator of the transaction manager it lives on: `format` and a
 * writable `open` bind it there once; `reload` brings the same object back to a
 * committed state (abort), so the binding never changes.
 */
export class MetadataSpaceMap extends CountedSpaceMap implements SpaceMap, MetadataAllocator {
  private readonly tm: TransactionManager;
  private readonly overflowTree: BTree<number>;
  private entries: IndexEntry[];
  private indexBlock: number;
  private refCountRoot: number;

  private constructor(tm: TransactionManager, counts: RefCounts, entries: IndexEntry[], indexBlock: number, refCountRoot: number) {
    super(counts);
    this.tm = tm;
    this.entries = entries;
    this.indexBlock = indexBlock;
    this.refCountRoot = refCountRoot;
    this.overflowTree = new BTree(tm, u32Value);
  }

  /**
   * A new metadata space map for a device of `nrBlocks` blocks (capped at the
   * format's maximum). Block 0 is reserved for the superblock. Binds itself as the
   * transaction manager's allocator.
   */
  static format(tm: TransactionManager, nrBlocks: number): MetadataSpaceMap {
    const n = Math.min(nrBlocks, MAX_METADATA_BLOCKS);
    const counts = new RefCounts(n);
    counts.inc(0);
    const entries: IndexEntry[] = [];
    for (let j = 0; j < nrBitmaps(n); j++) entries.push({ blocknr: 0, nrFree: ENTRIES_PER_BITMAP, noneFreeBefore: 0 });
    // Every bitmap must exist on disk, even one whose blocks are all free.
    counts.markAllBitmapsDirty();
    const sm = new MetadataSpaceMap(tm, counts, entries, 0, 0);
    tm.bindSpaceMap(sm);
    sm.refCountRoot = sm.overflowTree.empty();
    return sm;
  }

  /**
   * Load from a committed root. Unless `readOnly`, binds itself as the transaction
   * manager's allocator; a read-only one only answers counts (status, reports).
   */
  static open(tm: TransactionManager, root: SpaceMapRoot, opts: { readOnly?: boolean } = {}): MetadataSpaceMap {
    const sm = new MetadataSpaceMap(tm, new RefCounts(0), [], root.bitmapRoot, root.refCountRoot);
    sm.reload(root);
    if (!opts.readOnly) tm.bindSpaceMap(sm);
    return sm;
  }

  /** Drop everything since the last commit: reload the committed state under `root`. */
  reload(root: SpaceMapRoot): void {
    const n = root.nrBlocks;
    const tm = this.tm;
    if (n > MAX_METADATA_BLOCKS || n > tm.bm.nrBlocks) {
      throw new ThinError('E_CORRUPT', `metadata space map claims ${n} blocks, but the device has ${tm.bm.nrBlocks} (format maximum ${MAX_METADATA_BLOCKS})`, { kind: 'metadata space map' });
    }
    const counts = new RefCounts(n);
    const index = tm.read(root.bitmapRoot, indexBlockValidator);
    const entries = readIndexBlock(index, nrBitmaps(n));
    entries.forEach((e, j) => {
      const bm = tm.read(e.blocknr, bitmapValidator);
      counts.loadPayload(j, bm.subarray(BITMAP_HEADER));
    });
    this.counts = counts;
    this.entries = entries;
    this.indexBlock = root.bitmapRoot;
    this.refCountRoot = root.refCountRoot;
    this.loadOverflow(this.overflowTree, root.refCountRoot);
  }

  allocate(): number {
    const b = this.counts.allocate(1, this.counts.nrBlocks);
    if (b < 0) {
      throw new ThinError('E_NO_METADATA_SPACE', `out of metadata space: all ${this.counts.nrBlocks} metadata blocks are in use (or freed in this transaction); grow the metadata device`, { kind: 'metadata space map' });
    }
    return b;
  }

  extend(nrBlocks: number): void {
    const n = Math.min(nrBlocks, MAX_METADATA_BLOCKS);
    if (n <= this.counts.nrBlocks) return;
    this.counts.extend(n);
    while (this.entries.length < nrBitmaps(n)) this.entries.push({ blocknr: 0, nrFree: ENTRIES_PER_BITMAP, noneFreeBefore: 0 });
  }

  commit(): SpaceMapRoot {
    const written = new Map<number, WritableBlock>();
    let index: WritableBlock | undefined;
    for (let round = 0; ; round++) {
      if (round > 1000) throw new ThinError('E_INVARIANT', 'metadata space map commit did not converge after 1000 rounds of shadowing its own blocks');
      let progress = false;
      const changed = this.counts.takeDirtyOverflow();
      if (changed.length > 0) {
        for (const b of changed) {
          const c = this.counts.get(b);
          this.refCountRoot = c >= 3 ? this.overflowTree.insert(this.refCountRoot, b, c) : this.overflowTree.remove(this.refCountRoot, b).root;
        }
        progress = true;
      }
      if (index === undefined) {
        index = this.writable(this.indexBlock, indexBlockValidator);
        this.indexBlock = index.location;
        progress = true;
      }
      for (const j of this.counts.dirtyBitmapList()) {
        if (written.has(j)) continue;
        const wb = this.writable(this.entries[j].blocknr, bitmapValidator);
        written.set(j, wb);
        this.entries[j].blocknr = wb.location;
        progress = true;
      }
      if (!progress) break;
    }
    for (const [j, wb] of written) {
      wb.data.set(this.counts.bitmapPayload(j), BITMAP_HEADER);
      this.entries[j].nrFree = this.counts.nrFreeIn(j);
      this.entries[j].noneFreeBefore = this.counts.firstFreeIn(j);
    }
    writeIndexBlock(index!.data, this.entries);
    return { nrBlocks: this.counts.nrBlocks, nrAllocated: this.counts.nrAllocated, bitmapRoot: this.indexBlock, refCountRoot: this.refCountRoot };
  }

  markCommitted(): void {
    this.counts.markCommitted();
    // The kernel allocates from the lowest free block upward after each commit.
    this.counts.resetCursor(1);
  }

  /** Writable version of an existing block (shadowed), or a new one when `b` is 0 (none yet). */
  private writable(b: number, v: typeof bitmapValidator): WritableBlock {
    return b === 0 ? this.tm.newBlock(v) : this.tm.shadow(b, v).block;
  }
}
