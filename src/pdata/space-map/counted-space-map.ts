/**
 * What both space maps share: reference counts held in memory (RefCounts) for the
 * whole transaction, and how an overflow tree (counts of 3 or more) loads into them.
 * The interface and its contract are in space-map.ts.
 */
import type { BTree } from '../btree/btree';
import type { RefCounts } from './ref-counts';

export abstract class CountedSpaceMap {
  constructor(protected counts: RefCounts) {}

  get nrBlocks(): number { return this.counts.nrBlocks; }
  get nrAllocated(): number { return this.counts.nrAllocated; }
  get nrFree(): number { return this.counts.nrBlocks - this.counts.nrAllocated; }
  count(b: number): number { return this.counts.get(b); }
  inc(b: number): void { this.counts.inc(b); }
  dec(b: number): number { return this.counts.dec(b); }

  /** After the bitmaps are loaded: exact counts of 3+ from the overflow tree, then recount. */
  protected loadOverflow(tree: BTree<number>, root: number): void {
    for (const [b, c] of tree.entries(root)) {
      if (b < this.counts.nrBlocks) this.counts.loadOverflowCount(b, c);
    }
    this.counts.recount();
  }
}
