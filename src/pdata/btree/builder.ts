/**
 * Bulk B-tree builder: builds a tree bottom-up from keys pushed in strictly
 * increasing order, in O(n) and one pass, for restore and other bulk loads.
 *
 * Contract: the tree it returns holds exactly the pushed (key, value) pairs; values
 * bring their own references (no inc). Every node is at least half full: nodes are
 * cut at max_entries, except that the last 2 x max_entries (or fewer) entries of a
 * level are split into two halves (the rule of thin-provisioning-tools' builder,
 * spec §4.4). `push` encodes the value at once: the caller may reuse the object for the
 * next push (restore does: no object per mapping). Memory: two nodes' worth of entries
 * per level.
 */
import { ThinError } from '../../errors';
import type { TransactionManager } from '../transaction-manager';
import {
  btreeNodeValidator, INTERNAL_NODE, INTERNAL_VALUE_SIZE, initNode, keyOffset, LEAF_NODE, maxEntriesFor, setKey, setNrEntries, setValue64,
} from './node';
import type { ValueType } from './value-type';

/**
 * One level's pending entries, in typed arrays reused for the whole build: keys, and
 * either the child block numbers (internal levels) or the leaf values already encoded,
 * vsize bytes each. Nothing per entry outlives its push, and no array is regrown (a bulk
 * load makes millions of entries; kept as objects or in growing arrays, they would be
 * promoted by the young-generation GC and grow the heap with the load).
 */
class Level {
  readonly keys: Float64Array;
  readonly children: Float64Array | undefined;
  readonly staged: Uint8Array | undefined;
  readonly stagedView: DataView | undefined;
  /** Entries pending. */
  n = 0;
  emitted = 0;
  constructor(readonly flags: number, readonly max: number, readonly vsize: number) {
    this.keys = new Float64Array(2 * max + 1);
    if (flags === LEAF_NODE) {
      this.staged = new Uint8Array((2 * max + 1) * vsize);
      this.stagedView = new DataView(this.staged.buffer);
    } else {
      this.children = new Float64Array(2 * max + 1);
    }
  }
}

export class BTreeBuilder<V> {
  private readonly levels: Level[] = [];
  private lastKey = -1;
  private count = 0;

  constructor(private readonly tm: TransactionManager, private readonly vt: ValueType<V>) {
    this.levels.push(new Level(LEAF_NODE, maxEntriesFor(vt.size), vt.size));
  }

  get size(): number {
    return this.count;
  }

  push(key: number, value: V): void {
    if (!(key > this.lastKey)) {
      throw new ThinError('E_INVALID', `bulk btree build needs strictly increasing keys: ${key} after ${this.lastKey}`, { key });
    }
    this.lastKey = key;
    this.count++;
    this.add(0, key, value);
  }

  /** Finish every level and return the root block (an empty leaf if nothing was pushed). */
  finish(): number {
    for (let i = 0; ; i++) {
      const lv = this.levels[i];
      if (lv.emitted === 0 && lv.n <= lv.max) {
        // Top level: whatever is pending becomes the root (possibly an empty leaf).
        return this.writeNode(lv, 0, lv.n);
      }
      const n = lv.n;
      if (n > lv.max) {
        const half = Math.floor(n / 2);
        this.emit(i, 0, half);
        this.emit(i, half, n);
      } else if (n > 0) {
        this.emit(i, 0, n);
      }
      lv.n = 0;
    }
  }

  private add(i: number, key: number, value: unknown): void {
    const lv = this.levels[i];
    const at = lv.n++;
    lv.keys[at] = key;
    if (lv.stagedView) this.vt.write(lv.stagedView, at * lv.vsize, value as V);
    else lv.children![at] = value as number;
    const n = lv.n;
    // Keep up to 2 x max pending so the last two nodes of the level can be balanced.
    if (n > 2 * lv.max) {
      this.emit(i, 0, lv.max);
      lv.keys.copyWithin(0, lv.max, n);
      if (lv.staged) lv.staged.copyWithin(0, lv.max * lv.vsize, n * lv.vsize);
      else lv.children!.copyWithin(0, lv.max, n);
      lv.n = n - lv.max;
    }
  }

  private emit(i: number, from: number, to: number): void {
    const lv = this.levels[i];
    const block = this.writeNode(lv, from, to);
    lv.emitted++;
    if (this.levels.length === i + 1) this.levels.push(new Level(INTERNAL_NODE, maxEntriesFor(INTERNAL_VALUE_SIZE), INTERNAL_VALUE_SIZE));
    this.add(i + 1, lv.keys[from], block);
  }

  private writeNode(lv: Level, from: number, to: number): number {
    const wb = this.tm.newBlock(btreeNodeValidator);
    const d = wb.data;
    initNode(d, lv.flags, lv.max, lv.vsize);
    for (let j = from; j < to; j++) {
      setKey(d, j - from, lv.keys[j]);
      if (lv.children) setValue64(d, j - from, lv.children[j]);
    }
    if (lv.staged) d.set(lv.staged.subarray(from * lv.vsize, to * lv.vsize), keyOffset(lv.max));
    setNrEntries(d, to - from);
    return wb.location;
  }
}
