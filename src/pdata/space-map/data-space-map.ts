/**
 * The data space map (spec §6.5); see the class below and space-map.ts for the contract.
 */
import { ThinError } from '../../errors';
import { BTree } from '../btree/btree';
import { BTreeBuilder } from '../btree/builder';
import { u32Value } from '../btree/value-type';
import type { TransactionManager } from '../transaction-manager';
import { bitmapValidator, BITMAP_HEADER, nrBitmaps } from './bitmap-block';
import type { IndexEntry } from './index-entry';
import { indexEntryValue } from './index-entry-value';
import { RefCounts } from './ref-counts';
import { CountedSpaceMap } from './counted-space-map';
import type { SpaceMap } from './space-map';
import type { SpaceMapRoot } from './sm-root';

/** Overflow entries taken per batch at commit. */
const BATCH = 65536;

/** Data blocks are 40-bit numbers in mappings. */
export const MAX_DATA_BLOCKS = 2 ** 40;

/**
 * The data space map (spec §6.5): counts for pool data blocks in bitmaps found
 * through an index btree (key = bitmap number, value = index entry), plus an
 * overflow btree for counts of 3 or more. Its bitmaps and tree nodes are metadata
 * blocks, allocated through the transaction manager, so it commits before the
 * metadata space map.
 */
export class DataSpaceMap extends CountedSpaceMap implements SpaceMap {
  private readonly indexTree: BTree<IndexEntry>;
  private readonly overflowTree: BTree<number>;
  private readonly tm: TransactionManager;
  private blocknrs: number[];
  private bitmapRoot: number;
  private refCountRoot: number;
  /** The overflow tree is still the empty leaf `format` made: a commit may build it in bulk. */
  private overflowEmpty = false;

  private constructor(tm: TransactionManager, counts: RefCounts, blocknrs: number[], bitmapRoot: number, refCountRoot: number) {
    super(counts);
    this.tm = tm;
    this.blocknrs = blocknrs;
    this.bitmapRoot = bitmapRoot;
    this.refCountRoot = refCountRoot;
    this.indexTree = new BTree(tm, indexEntryValue);
    this.overflowTree = new BTree(tm, u32Value);
  }

  static format(tm: TransactionManager, nrBlocks: number): DataSpaceMap {
    checkDataBlocks(nrBlocks);
    const indexTree = new BTree(tm, indexEntryValue);
    const overflow = new BTree(tm, u32Value);
    const counts = new RefCounts(nrBlocks);
    const sm = new DataSpaceMap(tm, counts, new Array(nrBitmaps(nrBlocks)).fill(0), indexTree.empty(), overflow.empty());
    sm.overflowEmpty = true;
    counts.markAllBitmapsDirty();
    return sm;
  }

  static open(tm: TransactionManager, root: SpaceMapRoot): DataSpaceMap {
    checkDataBlocks(root.nrBlocks);
    const want = nrBitmaps(root.nrBlocks);
    // The index tree must list a bitmap for every block the root claims, before anything
    // is sized by that claim: a damaged nr_blocks must be a finding, not a huge allocation.
    let listed = 0;
    for (const entry of new BTree(tm, indexEntryValue).entries(root.bitmapRoot)) { void entry; if (++listed > want) break; }
    if (listed !== want) {
      throw new ThinError('E_CORRUPT', `data space map index tree lists ${listed > want ? 'more' : listed} bitmaps, but ${root.nrBlocks} blocks need ${want}`, { block: root.bitmapRoot, kind: 'data space map index' });
    }
    const counts = new RefCounts(root.nrBlocks);
    const sm = new DataSpaceMap(tm, counts, [], root.bitmapRoot, root.refCountRoot);
    for (const [j, e] of sm.indexTree.entries(root.bitmapRoot)) {
      if (j !== sm.blocknrs.length || j >= want) {
        throw new ThinError('E_CORRUPT', `data space map index tree has entry ${j}; expected entries 0..${want - 1} in order`, { block: root.bitmapRoot, kind: 'data space map index' });
      }
      const data = tm.read(e.blocknr, bitmapValidator);
      counts.loadPayload(j, data.subarray(BITMAP_HEADER));
      sm.blocknrs.push(e.blocknr);
    }
    if (sm.blocknrs.length !== want) {
      throw new ThinError('E_CORRUPT', `data space map index tree lists ${sm.blocknrs.length} bitmaps, but ${root.nrBlocks} blocks need ${want}`, { block: root.bitmapRoot, kind: 'data space map index' });
    }
    sm.loadOverflow(sm.overflowTree, root.refCountRoot);
    return sm;
  }

  /** Allocate a data block; -1 when the pool is out of data space (a normal outcome, not an error). */
  tryAllocate(): number {
    return this.counts.allocate(0, this.counts.nrBlocks);
  }

  allocate(): number {
    const b = this.tryAllocate();
    if (b < 0) throw new ThinError('ENOSPC', `out of data space: all ${this.counts.nrBlocks} data blocks are in use; grow the data device`, { kind: 'data space map' });
    return b;
  }

  extend(nrBlocks: number): void {
    checkDataBlocks(nrBlocks);
    if (nrBlocks <= this.counts.nrBlocks) return;
    this.counts.extend(nrBlocks);
    while (this.blocknrs.length < nrBitmaps(nrBlocks)) this.blocknrs.push(0);
  }

  commit(): SpaceMapRoot {
    for (const j of this.counts.dirtyBitmapList().sort((a, b) => a - b)) {
      const old = this.blocknrs[j];
      const wb = old === 0 ? this.tm.newBlock(bitmapValidator) : this.tm.shadow(old, bitmapValidator).block;
      wb.data.set(this.counts.bitmapPayload(j), BITMAP_HEADER);
      this.blocknrs[j] = wb.location;
      const entry: IndexEntry = { blocknr: wb.location, nrFree: this.counts.nrFreeIn(j), noneFreeBefore: this.counts.firstFreeIn(j) };
      this.bitmapRoot = this.indexTree.insert(this.bitmapRoot, j, entry);
      this.tm.spillIfAbove();
    }
    // In batches (a restore of a shared pool changes millions); a bulk load writes the
    // blocks made so far between changes (the transaction manager's spillAbove).
    if (this.overflowEmpty) this.buildOverflow();
    for (let batch = this.counts.takeDirtyOverflow(BATCH); batch.length > 0; batch = this.counts.takeDirtyOverflow(BATCH)) {
      for (const b of batch) {
        const c = this.counts.get(b);
        this.refCountRoot = c >= 3 ? this.overflowTree.insert(this.refCountRoot, b, c) : this.overflowTree.remove(this.refCountRoot, b).root;
        this.tm.spillIfAbove();
      }
    }
    this.counts.clearDirty();
    return { nrBlocks: this.counts.nrBlocks, nrAllocated: this.counts.nrAllocated, bitmapRoot: this.bitmapRoot, refCountRoot: this.refCountRoot };
  }

  markCommitted(): void {
    this.counts.markCommitted();
  }

  /**
   * The first overflow entries of a new space map (a restore makes millions): the tree
   * is empty, so it is built bottom-up from the changed blocks (ascending) with the bulk
   * builder instead of one insert each, and the empty root is given back. Leaves no
   * overflow change dirty; a commit with no count of 3 or more keeps the empty tree.
   */
  private buildOverflow(): void {
    const builder = new BTreeBuilder(this.tm, u32Value);
    const batch = new Float64Array(BATCH);
    for (let n = this.counts.takeDirtyOverflowInto(batch); n > 0; n = this.counts.takeDirtyOverflowInto(batch)) {
      for (let i = 0; i < n; i++) {
        const c = this.counts.get(batch[i]);
        if (c >= 3) builder.push(batch[i], c); // below 3 with no entry in an empty tree: nothing to remove
      }
      this.tm.spillIfAbove();
    }
    if (builder.size === 0) return;
    const empty = this.refCountRoot;
    this.refCountRoot = builder.finish();
    this.tm.dec(empty);
    this.overflowEmpty = false;
  }
}

function checkDataBlocks(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_DATA_BLOCKS) {
    throw new ThinError('E_RANGE', `data device of ${n} blocks is outside what dm-thin can address (0..2^40 blocks)`, { value: n });
  }
}
