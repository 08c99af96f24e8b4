/**
 * Persistent copy-on-write B-tree over metadata blocks (the kernel's dm_btree).
 *
 * Contract:
 * - Functional on roots: a tree is named by its root block number. Every mutation
 *   takes a root and returns the new root; the caller stores it (superblock, parent
 *   tree) and forgets the old one. Mutations shadow the spine from the root through
 *   `tm.shadow`, so a block committed earlier is never written in place and a shared
 *   node is copied (and its children/values incremented) before it is changed.
 * - Ownership: the caller owns one reference to each root it holds. A value handed to
 *   `insert` brings one reference that the tree takes over; an overwritten or removed
 *   value is released with `vt.dec`. Exception, as in the kernel: overwriting a value
 *   with one that `vt.equal` calls equal releases nothing and takes nothing (the
 *   caller still holds the reference it brought). `del(root)` gives the caller's
 *   reference to the tree back.
 * - Cost: lookup, insert and remove are O(log n) node reads (depth <= 4 for any tree
 *   that fits a metadata device); reads allocate nothing per node. `removeRange`
 *   touches each affected leaf once; iteration, `leaves` and `visitLeaves` read every
 *   node once (`leaves` with no object per entry).
 * - Transactions: everything happens inside the transaction manager's open
 *   transaction; nothing is durable until it commits. A ThinError thrown by a
 *   mutation (corruption, metadata space exhausted) leaves the transaction
 *   inconsistent: abort it. Generators must not outlive a mutation of the same tree.
 * - Shape: every non-root node holds at least max_entries/3 entries, all leaves sit
 *   at one depth, and a parent key equals its child's first key (readers accept a
 *   lower parent key, as kernel removals leave). Sequential appends leave full nodes.
 * - Corruption (bad checksum or header, wrong value size, a cycle, more than
 *   MAX_BTREE_DEPTH levels, keys out of order on a lookup path) throws E_CHECKSUM or
 *   E_CORRUPT naming the block and the path to it (error-path.ts: the key sought and
 *   the blocks from the root, in the message and in `details.path`); never an
 *   infinite loop. A broken invariant of thinsim's own is E_INVARIANT. Every node on a lookup path
 *   must start at or above its parent's key for it; a lookup that ends without its key
 *   has also checked that last node's keys against the parent's upper bound. A lookup
 *   that finds its key returns it even from a node misplaced under its parent (the
 *   checker reports such a node).
 *
 * Files: this class is the interface; node.ts is the block codec, spine.ts the node
 * reads and shadowing every path shares, error-path.ts where an error was found,
 * lookup.ts the reads and iteration,
 * insert.ts insert (append hint, making room, splits), remove.ts removal
 * (rebalancing) and `del`, builder.ts the bulk builder.
 */
import { ThinError } from '../../errors';
import type { TransactionManager } from '../transaction-manager';
import { Inserter } from './insert';
import {
  entries, highestKey, KEY_END, LeafView, LeafVisitor, leaves, lookup, lookupGe, lookupLe, lowestKey, NodeVisitor,
  visitLeaves, walkNodes,
} from './lookup';
import { locate } from './error-path';
import { INTERNAL_VALUE_SIZE, LEAF_NODE, maxEntriesFor, valueOffset } from './node';
import { del, remove, removeRange } from './remove';
import { newNode, TreeCore } from './spine';
import type { SubtreeOwner, ValueType } from './value-type';

export { KEY_END, LeafView };
export type { LeafVisitor, NodeVisitor };

export interface BTreeOptions {
  internalMaxEntries?: number;
  /** What a key names, in error paths ("dev 3", "key 42"); default "key". */
  keyLabel?: string;
}

export class BTree<V> implements SubtreeOwner, TreeCore<V> {
  readonly tm: TransactionManager;
  readonly vt: ValueType<V>;
  /** max_entries of the leaves this tree creates. */
  readonly leafMaxEntries: number;
  /** max_entries of the internal nodes this tree creates (252 except in tests). */
  readonly internalMaxEntries: number;
  readonly keyLabel: string;
  private readonly rbuf: Uint8Array;
  private readonly rdv: DataView;
  private readonly inserter: Inserter<V>;

  /**
   * `opts.internalMaxEntries` is for tests only: tiny internal nodes build deep trees
   * from a few keys. Real trees use the kernel's value, 252.
   */
  constructor(tm: TransactionManager, vt: ValueType<V>, opts: BTreeOptions = {}) {
    this.tm = tm;
    this.vt = vt;
    this.leafMaxEntries = maxEntriesFor(vt.size);
    const im = opts.internalMaxEntries ?? maxEntriesFor(INTERNAL_VALUE_SIZE);
    if (!Number.isInteger(im) || im < 6 || im % 3 !== 0 || im > maxEntriesFor(INTERNAL_VALUE_SIZE)) {
      throw new ThinError('E_INVALID', `internal max_entries must be a multiple of 3 from 6 to 252, got ${im}`);
    }
    this.internalMaxEntries = im;
    this.keyLabel = opts.keyLabel ?? 'key';
    this.rbuf = new Uint8Array(vt.size);
    this.rdv = new DataView(this.rbuf.buffer);
    this.inserter = new Inserter(this);
  }

  /** A new empty tree: one LEAF with no entries. The caller owns its reference. */
  empty(): number {
    return newNode(this, LEAF_NODE, this.leafMaxEntries, this.vt.size).loc;
  }

  // ---------------------------------------------------------------- reading (lookup.ts)

  lookup(root: number, key: number): V | undefined {
    try {
      return lookup(this, root, key);
    } catch (e) {
      throw locate(this, e, root, key);
    }
  }

  /** The entry with the largest key <= `key`. */
  lookupLe(root: number, key: number): [number, V] | undefined {
    try {
      return lookupLe(this, root, key);
    } catch (e) {
      throw locate(this, e, root, key);
    }
  }

  /** The entry with the smallest key >= `key`. */
  lookupGe(root: number, key: number): [number, V] | undefined {
    try {
      return lookupGe(this, root, key);
    } catch (e) {
      throw locate(this, e, root, key);
    }
  }

  /** C++ lower_bound: the first entry whose key is >= `key` (same as lookupGe). */
  lowerBound(root: number, key: number): [number, V] | undefined {
    return this.lookupGe(root, key);
  }

  highestKey(root: number): number | undefined {
    try {
      return highestKey(this, root);
    } catch (e) {
      throw locate(this, e, root);
    }
  }

  lowestKey(root: number): number | undefined {
    try {
      return lowestKey(this, root);
    } catch (e) {
      throw locate(this, e, root);
    }
  }

  /** Entries with from <= key < to, in key order. Do not mutate the tree while iterating. */
  entries(root: number, from = 0, to = KEY_END): Generator<[number, V]> {
    return entries(this, root, from, to);
  }

  /**
   * The non-empty leaves in key order, each as a LeafView (keys decoded here, values
   * left in place for the value type's field readers): a pull version of
   * `visitLeaves`, so two trees can be walked in step, with no object per entry. The
   * same view is reused for every leaf: it is valid until the next step, and the
   * tree must not change while this runs.
   */
  leaves(root: number): Generator<LeafView> {
    return leaves(this, root);
  }

  /** Number of entries (walks every leaf). */
  count(root: number): number {
    let c = 0;
    this.visitLeaves(root, (_d, n) => { c += n; });
    return c;
  }

  /**
   * Every leaf in key order, as raw blocks (parse with `node.ts` and `vt.read`). The
   * data must not be modified or kept past the callback. Returns false if `fn` stopped.
   */
  visitLeaves(root: number, fn: LeafVisitor): boolean {
    try {
      return visitLeaves(this, root, fn);
    } catch (e) {
      throw locate(this, e, root);
    }
  }

  /**
   * Every distinct node reachable from `root` once, pre-order, with its depth. A node
   * reached again through another parent (sharing) is not revisited; one that is its
   * own ancestor (a cycle) throws E_CORRUPT.
   */
  walkNodes(root: number, fn: NodeVisitor): void {
    try {
      walkNodes(this, root, fn);
    } catch (e) {
      throw locate(this, e, root);
    }
  }

  /** Read value `i` of leaf `d` (allocation-free for number values). */
  readValue(d: Uint8Array, i: number): V {
    const o = valueOffset(d, i);
    if (this.vt.readFrom) return this.vt.readFrom(d, o);
    const buf = this.rbuf;
    for (let j = 0; j < buf.length; j++) buf[j] = d[o + j];
    return this.vt.read(this.rdv, 0);
  }

  // ---------------------------------------------------------------- mutation (insert.ts, remove.ts)

  /** Whether the last `insert` added a new key (true) or overwrote an existing one (false). */
  get lastInsertAdded(): boolean {
    return this.inserter.lastInsertAdded;
  }

  /** Insert or overwrite `key`. Returns the new root; `lastInsertAdded` tells which it did. */
  insert(root: number, key: number, value: V): number {
    try {
      return this.inserter.insert(root, key, value);
    } catch (e) {
      throw locate(this, e, root, key);
    }
  }

  /**
   * Replace the value at `key` with `fn(old)` without any inc/dec: `fn` takes over the
   * old value's reference and returns one for the new value. This is how a multi-level
   * tree rewrites a subtree root after shadowing its way down to it. Returns the new
   * root, or undefined (nothing touched) when `key` is absent.
   */
  modify(root: number, key: number, fn: (old: V) => V): number | undefined {
    try {
      return this.inserter.modify(root, key, fn);
    } catch (e) {
      throw locate(this, e, root, key);
    }
  }

  /** Remove `key`; its value is released with vt.dec and returned. */
  remove(root: number, key: number): { root: number; value: V | undefined } {
    this.inserter.dropHint();
    try {
      return remove(this, root, key);
    } catch (e) {
      throw locate(this, e, root, key);
    }
  }

  /** Remove every key in [from, to). */
  removeRange(root: number, from: number, to: number): { root: number; removed: number } {
    this.inserter.dropHint();
    try {
      return removeRange(this, root, from, to);
    } catch (e) {
      throw locate(this, e, root, from);
    }
  }

  /**
   * Drop one reference to the tree at `root`. When it was the last, release the
   * children of internal nodes and the values of leaves (vt.dec), recursively.
   */
  del(root: number): void {
    this.inserter.dropHint();
    try {
      del(this, root);
    } catch (e) {
      throw locate(this, e, root);
    }
  }
}
