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
 *   touches each affected leaf once; iteration and `visitLeaves` read every node once.
 * - Transactions: everything happens inside the transaction manager's open
 *   transaction; nothing is durable until it commits. A ThinError thrown by a
 *   mutation (corruption, metadata space exhausted) leaves the transaction
 *   inconsistent: abort it. Generators must not outlive a mutation of the same tree.
 * - Shape: every non-root node holds at least max_entries/3 entries, all leaves sit
 *   at one depth, and a parent key equals its child's first key (readers accept a
 *   lower parent key, as kernel removals leave). Sequential appends leave full nodes.
 * - Corruption (bad checksum or header, wrong value size, a cycle, more than
 *   MAX_BTREE_DEPTH levels, keys out of order on a lookup path) throws E_CHECKSUM or
 *   E_CORRUPT naming the block; never an infinite loop. Every node on a lookup path
 *   must start at or above its parent's key for it; a lookup that ends without its key
 *   has also checked that last node's keys against the parent's upper bound. A lookup
 *   that finds its key returns it even from a node misplaced under its parent (the
 *   checker reports such a node).
 */
import { ThinError } from '../../errors';
import type { TransactionManager } from '../transaction-manager';
import { getU32 } from '../layout';
import {
  btreeNodeValidator, checkKey, copyEntries, deleteAt, deleteRange, initNode, INTERNAL_NODE,
  INTERNAL_VALUE_SIZE, isLeaf, KEY_SIZE, keyAt, LEAF_NODE, MAX_BTREE_DEPTH, NODE_FLAGS, NODE_HEADER_SIZE, NODE_NR_ENTRIES,
  NODE_VALUE_SIZE, maxEntries, maxEntriesFor, nodeFlags, nrEntries, openGap, rawKeyAt, searchGe, searchLe, setKey,
  setNrEntries, setValue64, value64, valueOffset, valueSize,
} from './node';
import type { SubtreeOwner, ValueType } from './value-type';

/** Called for each leaf in key order with its raw block; return false to stop. */
export type LeafVisitor = (leafData: Uint8Array, nrEntries: number, leafBlock: number) => void | false;
/** Called once per distinct node; return false to skip that node's children. */
export type NodeVisitor = (block: number, data: Uint8Array, depth: number) => void | false;

/**
 * One leaf as a bulk reader sees it: `count` entries, `key(i)` decoded (and checked)
 * here, value i left as `valueSize` bytes at `valueOffset(i)` of `bytes`, for the
 * value type's own field readers. Views are reused: valid until the iterator moves.
 */
export class LeafView {
  bytes: Uint8Array = new Uint8Array(0);
  count = 0;
  private valuesAt = 0;
  private vsize = 0;
  private dv: DataView | undefined;

  key(i: number): number {
    return keyAt(this.bytes, i);
  }

  valueOffset(i: number): number {
    return this.valuesAt + this.vsize * i;
  }

  /** Value i decoded by `vt` (an object per call for object values: for checkers, not bulk paths). */
  value<V>(i: number, vt: ValueType<V>): V {
    const o = this.valuesAt + this.vsize * i;
    if (vt.readFrom) return vt.readFrom(this.bytes, o);
    if (this.dv === undefined) this.dv = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    return vt.read(this.dv, o);
  }

  /** Point the view at leaf `d`. */
  show(d: Uint8Array): void {
    this.bytes = d;
    this.count = nrEntries(d);
    this.valuesAt = valueOffset(d, 0);
    this.vsize = valueSize(d);
    this.dv = undefined;
  }
}

export interface BTreeOptions {
  internalMaxEntries?: number;
}

/** One past the largest key: the default exclusive end of a range. */
export const KEY_END = 2 ** 53;

interface Frame {
  d: Uint8Array;
  i: number;
}

interface SpineNode {
  loc: number;
  data: Uint8Array;
  /** Index of the child taken below this node. */
  idx: number;
}

function outsideParent(b: number, first: number, last: number, lo: number, hi: number): ThinError {
  return corrupt(b, `keys [${first}, ${last}] lie outside the parent's range [${lo}, ${hi})`);
}

function corrupt(b: number, what: string): ThinError {
  return new ThinError('E_CORRUPT', `btree node (block ${b}): ${what}`, { block: b, kind: 'btree node' });
}

export class BTree<V> implements SubtreeOwner {
  readonly tm: TransactionManager;
  readonly vt: ValueType<V>;
  /** max_entries of the leaves this tree creates. */
  readonly leafMaxEntries: number;
  /** max_entries of the internal nodes this tree creates (252 except in tests). */
  readonly internalMaxEntries: number;
  private readonly rbuf: Uint8Array;
  private readonly rdv: DataView;
  private readonly wbuf: Uint8Array;
  private readonly wdv: DataView;

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
    this.rbuf = new Uint8Array(vt.size);
    this.rdv = new DataView(this.rbuf.buffer);
    this.wbuf = new Uint8Array(vt.size);
    this.wdv = new DataView(this.wbuf.buffer);
  }

  /** A new empty tree: one LEAF with no entries. The caller owns its reference. */
  empty(): number {
    const b = this.tm.newBlock(btreeNodeValidator);
    initNode(b.data, LEAF_NODE, this.leafMaxEntries, this.vt.size, true);
    return b.location;
  }

  // ---------------------------------------------------------------- reading

  lookup(root: number, key: number): V | undefined {
    checkKey(key);
    let b = root;
    let lo = 0;
    let hi = KEY_END;
    for (let depth = 0; ; depth++) {
      const d = this.node(b, depth);
      const n = getU32(d, NODE_NR_ENTRIES);
      if (n === 0) return undefined; // an empty leaf (node() rejects empty internal nodes)
      const leaf = getU32(d, NODE_FLAGS) === LEAF_NODE;
      // Keys within a node were checked in order when it was read; this node must also
      // lie inside the range [lo, hi) its parent gave it. The first key shares a cache
      // line with the header, so it is always checked.
      const first = rawKeyAt(d, 0);
      if (first < lo) throw outsideParent(b, first, rawKeyAt(d, n - 1), lo, hi);
      // Fast path: the parent's range (at the root, its own keys) predicts where the key sits
      // (thin devices map mostly contiguous virtual blocks), and one probe confirms it. A
      // leaf that holds the key answers at once; a probe that does not settle it falls
      // through to the full search, which also checks the node's last key against hi.
      if (key >= first) {
        const span = hi < KEY_END ? hi - first : rawKeyAt(d, n - 1) + 1 - first; // rightmost spine: no bound above
        const g = Math.min(n - 1, Math.floor(((key - first) / span) * n));
        const kg = rawKeyAt(d, g);
        if (leaf) {
          if (kg === key) return this.readValue(d, g);
        } else if (kg <= key) {
          const kNext = g + 1 < n ? rawKeyAt(d, g + 1) : hi;
          if (key < kNext && kNext <= hi) {
            lo = kg;
            hi = kNext;
            b = value64(d, g);
            continue;
          }
        }
      }
      const last = rawKeyAt(d, n - 1);
      if (last >= hi) throw outsideParent(b, first, last, lo, hi);
      if (key < first) return undefined;
      // Find i with key[i] <= key < key[i + 1]: l/kl and h/kh bracket it.
      let l = n - 1;
      let kl = last;
      let kh = hi;
      if (key < last) {
        l = 0;
        kl = first;
        let h = n - 1;
        kh = last;
        while (h - l > 1) {
          const m = (l + h) >>> 1;
          const km = rawKeyAt(d, m);
          if (km <= key) {
            l = m;
            kl = km;
          } else {
            h = m;
            kh = km;
          }
        }
      }
      if (leaf) return kl === key ? this.readValue(d, l) : undefined;
      lo = kl;
      hi = kh;
      b = value64(d, l);
    }
  }

  /** The entry with the largest key <= `key`. */
  lookupLe(root: number, key: number): [number, V] | undefined {
    checkKey(key);
    const f = this.findLe(root, key);
    return f ? [keyAt(f.d, f.i), this.readValue(f.d, f.i)] : undefined;
  }

  /** The entry with the smallest key >= `key`. */
  lookupGe(root: number, key: number): [number, V] | undefined {
    checkKey(key);
    const f = this.findGe(root, key);
    return f ? [keyAt(f.d, f.i), this.readValue(f.d, f.i)] : undefined;
  }

  /** C++ lower_bound: the first entry whose key is >= `key` (same as lookupGe). */
  lowerBound(root: number, key: number): [number, V] | undefined {
    return this.lookupGe(root, key);
  }

  highestKey(root: number): number | undefined {
    // Straight down the right edge, so a last key beyond 2^53 throws E_RANGE.
    let d = this.node(root, 0);
    for (let depth = 1; !isLeaf(d); depth++) d = this.node(value64(d, nrEntries(d) - 1), depth);
    const n = nrEntries(d);
    if (n > 0) return keyAt(d, n - 1);
    const f = this.findLe(root, KEY_END - 1); // an empty rightmost leaf (damaged or foreign tree)
    return f ? keyAt(f.d, f.i) : undefined;
  }

  lowestKey(root: number): number | undefined {
    const f = this.findGe(root, 0);
    return f ? keyAt(f.d, f.i) : undefined;
  }

  /** Entries with from <= key < to, in key order. Do not mutate the tree while iterating. */
  *entries(root: number, from = 0, to = KEY_END): Generator<[number, V]> {
    checkKey(from);
    const f = this.findGe(root, from);
    if (!f) return;
    const stack = f.stack;
    let d = f.d;
    let i = f.i;
    for (;;) {
      const n = nrEntries(d);
      const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
      const vs = this.vt.size;
      let off = valueOffset(d, i);
      for (; i < n; i++, off += vs) {
        const k = keyAt(d, i);
        if (k >= to) return;
        yield [k, this.vt.read(dv, off)];
      }
      const next = this.nextLeaf(stack);
      if (!next) return;
      d = next;
      i = 0;
    }
  }

  /**
   * The non-empty leaves in key order, each as a LeafView (keys decoded here, values
   * left in place for the value type's field readers): a pull version of
   * `visitLeaves`, so two trees can be walked in step, with no object per entry. The
   * same view is reused for every leaf: it is valid until the next step, and the
   * tree must not change while this runs.
   */
  *leaves(root: number): Generator<LeafView> {
    const f = this.findGe(root, 0);
    if (!f) return;
    const view = new LeafView();
    for (let d: Uint8Array | undefined = f.d; d !== undefined; d = this.nextLeaf(f.stack)) {
      view.show(d);
      yield view;
    }
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
    const visit = (b: number, depth: number): boolean => {
      const d = this.node(b, depth);
      const n = nrEntries(d);
      if (isLeaf(d)) return fn(d, n, b) !== false;
      for (let i = 0; i < n; i++) if (!visit(value64(d, i), depth + 1)) return false;
      return true;
    };
    return visit(root, 0);
  }

  /**
   * Every distinct node reachable from `root` once, pre-order, with its depth. A node
   * reached again through another parent (sharing) is not revisited; one that is its
   * own ancestor (a cycle) throws E_CORRUPT.
   */
  walkNodes(root: number, fn: NodeVisitor): void {
    const seen = new Set<number>();
    const path = new Set<number>();
    const visit = (b: number, depth: number): void => {
      if (path.has(b)) throw corrupt(b, `is its own ancestor (a cycle at depth ${depth})`);
      if (seen.has(b)) return;
      seen.add(b);
      const d = this.node(b, depth);
      if (fn(b, d, depth) === false || isLeaf(d)) return;
      path.add(b);
      const n = nrEntries(d);
      for (let i = 0; i < n; i++) visit(value64(d, i), depth + 1);
      path.delete(b);
    };
    visit(root, 0);
  }

  /** Copy the packed value (wbuf) to offset `o` of writable node `d`. */
  private putValue(d: Uint8Array, o: number): void {
    const w = this.wbuf;
    // A byte loop beats TypedArray.set for the 8-byte values of the hot trees.
    if (w.length <= 16) for (let j = 0; j < w.length; j++) d[o + j] = w[j];
    else d.set(w, o);
  }

  /** Read value `i` of leaf `d` (allocation-free for number values). */
  readValue(d: Uint8Array, i: number): V {
    const o = valueOffset(d, i);
    if (this.vt.readFrom) return this.vt.readFrom(d, o);
    const buf = this.rbuf;
    for (let j = 0; j < buf.length; j++) buf[j] = d[o + j];
    return this.vt.read(this.rdv, 0);
  }

  // ---------------------------------------------------------------- mutation

  /** Whether the last `insert` added a new key (true) or overwrote an existing one (false). */
  lastInsertAdded = false;

  /**
   * Where the last insert appended: the rightmost-so-far leaf of `hintRoot`, fresh in
   * this transaction, the bound below which its keys must stay, and its entry count,
   * max_entries and last key. Thin devices are provisioned mostly in ascending order,
   * so the next key usually belongs right after it and needs no descent.
   * When the hint was taken the root and the leaf were both writable (fresh in this
   * transaction, count 1); an unchanged transaction-manager epoch proves nothing since
   * has shadowed, shared, freed or committed anything (another BTree over the same
   * tree, a snapshot's inc, a commit, an abort all bump it), so only appends through
   * the hint have changed the leaf. Any other change to this tree drops the hint.
   */
  private hintLeaf: Uint8Array | undefined;
  /** A DataView over hintLeaf, so appends pack their value in place. */
  private hintDv: DataView | undefined;
  private hintRoot = -1;
  private hintEpoch = -1;
  private hintHi = 0;
  private hintN = 0;
  private hintMax = 0;
  private hintLast = 0;

  /** Insert or overwrite `key`. Returns the new root; `lastInsertAdded` tells which it did. */
  insert(root: number, key: number, value: V): number {
    checkKey(key);
    const h = this.hintLeaf;
    if (h !== undefined && root === this.hintRoot && this.hintEpoch === this.tm.epoch &&
        key > this.hintLast && key < this.hintHi && this.hintN < this.hintMax) {
      const n = this.hintN;
      // Pack straight into the free slot past nr_entries; a value that does not fit
      // throws with the slot zeroed again and nothing else touched.
      const vo = NODE_HEADER_SIZE + KEY_SIZE * this.hintMax + this.vt.size * n;
      try {
        this.vt.write(this.hintDv!, vo, value);
      } catch (e) {
        h.fill(0, vo, vo + this.vt.size);
        throw e;
      }
      setKey(h, n, key);
      setNrEntries(h, n + 1);
      this.hintN = n + 1;
      this.hintLast = key;
      this.lastInsertAdded = true;
      return root;
    }
    this.hintLeaf = undefined;
    // Pack first, so a value that does not fit throws before anything is shadowed.
    this.vt.write(this.wdv, 0, value);
    const top = this.shadowNode(root, 0);
    let d = top.data;
    let hi = KEY_END;
    if (nrEntries(d) >= maxEntries(d)) this.splitBeneath(d, key);
    for (let depth = 0; !isLeaf(d); depth++) {
      let i = searchLe(d, nrEntries(d), key);
      if (i < 0) {
        // Below every key: lower the bound here, and below as we go.
        i = 0;
        setKey(d, 0, key);
      }
      let child = this.shadowInto(d, i, depth + 1);
      if (nrEntries(child) >= maxEntries(child)) child = this.makeRoom(d, i, child, key, depth + 1);
      // makeRoom may have moved entries between siblings: find the child's slot again.
      const j = searchLe(d, nrEntries(d), key);
      if (j + 1 < nrEntries(d)) hi = keyAt(d, j + 1);
      d = child;
    }
    const n = nrEntries(d);
    const i = searchLe(d, n, key);
    if (i >= 0 && keyAt(d, i) === key) {
      const old = this.readValue(d, i);
      this.putValue(d, valueOffset(d, i));
      this.lastInsertAdded = false;
      if (this.vt.dec && !(this.vt.equal && this.vt.equal(old, value))) this.vt.dec(old);
    } else {
      this.lastInsertAdded = true;
      openGap(d, i + 1);
      setKey(d, i + 1, key);
      this.putValue(d, valueOffset(d, i + 1));
      if (i + 1 === n) {
        this.hintLeaf = d;
        this.hintDv = new DataView(d.buffer, d.byteOffset, d.byteLength);
        this.hintRoot = top.loc;
        this.hintEpoch = this.tm.epoch;
        this.hintHi = hi;
        this.hintN = n + 1;
        this.hintMax = maxEntries(d);
        this.hintLast = key;
      }
    }
    return top.loc;
  }

  /**
   * Replace the value at `key` with `fn(old)` without any inc/dec: `fn` takes over the
   * old value's reference and returns one for the new value. This is how a multi-level
   * tree rewrites a subtree root after shadowing its way down to it. Returns the new
   * root, or undefined (nothing touched) when `key` is absent.
   */
  modify(root: number, key: number, fn: (old: V) => V): number | undefined {
    checkKey(key);
    this.hintLeaf = undefined;
    if (this.lookup(root, key) === undefined) return undefined;
    const top = this.shadowNode(root, 0);
    let d = top.data;
    for (let depth = 0; !isLeaf(d); depth++) {
      const i = searchLe(d, nrEntries(d), key);
      d = this.shadowInto(d, i, depth + 1);
    }
    const i = searchLe(d, nrEntries(d), key);
    const nv = fn(this.readValue(d, i));
    this.vt.write(this.wdv, 0, nv);
    this.putValue(d, valueOffset(d, i));
    return top.loc;
  }

  /** Remove `key`; its value is released with vt.dec and returned. */
  remove(root: number, key: number): { root: number; value: V | undefined } {
    this.hintLeaf = undefined;
    checkKey(key);
    if (this.lookup(root, key) === undefined) return { root, value: undefined };
    const r = this.removeSpan(root, key, key + 1, true);
    return { root: r.root, value: r.values![0] };
  }

  /** Remove every key in [from, to). */
  removeRange(root: number, from: number, to: number): { root: number; removed: number } {
    this.hintLeaf = undefined;
    checkKey(from);
    if (to !== KEY_END) checkKey(to);
    let removed = 0;
    while (from < to) {
      const f = this.findGe(root, from);
      if (!f) break;
      const first = keyAt(f.d, f.i);
      if (first >= to) break;
      const r = this.removeSpan(root, first, to, false);
      root = r.root;
      removed += r.count;
      from = first; // nothing lies in [from, first); the next pass starts after the removed span
    }
    return { root, removed };
  }

  /**
   * Drop one reference to the tree at `root`. When it was the last, release the
   * children of internal nodes and the values of leaves (vt.dec), recursively.
   */
  del(root: number): void {
    this.hintLeaf = undefined;
    this.delAt(root, 0);
  }

  // ---------------------------------------------------------------- internals

  /** Read node `b` at `depth`, with the checks every path makes. */
  private node(b: number, depth: number): Uint8Array {
    if (depth > MAX_BTREE_DEPTH) throw corrupt(b, `reached at depth ${depth}, deeper than ${MAX_BTREE_DEPTH} levels (a cycle?)`);
    const d = this.tm.read(b, btreeNodeValidator);
    this.checkShape(d, b);
    return d;
  }

  private checkShape(d: Uint8Array, b: number): void {
    if (getU32(d, NODE_FLAGS) === LEAF_NODE) {
      if (getU32(d, NODE_VALUE_SIZE) !== this.vt.size) throw corrupt(b, `leaf with value_size ${getU32(d, NODE_VALUE_SIZE)}, this tree stores ${this.vt.size}-byte values`);
    } else if (getU32(d, NODE_NR_ENTRIES) === 0) {
      throw corrupt(b, 'internal node with no entries');
    }
  }

  /** Shadow `b` (copy-on-write) and inc what the copy points to if `b` was shared. */
  private shadowNode(b: number, depth: number): { loc: number; data: Uint8Array } {
    if (depth > MAX_BTREE_DEPTH) throw corrupt(b, `reached at depth ${depth}, deeper than ${MAX_BTREE_DEPTH} levels (a cycle?)`);
    const { block, incChildren } = this.tm.shadow(b, btreeNodeValidator);
    this.checkShape(block.data, b);
    if (incChildren) this.incEntries(block.data, 0, nrEntries(block.data));
    return { loc: block.location, data: block.data };
  }

  /** Shadow child `i` of writable node `p` and point `p` at the copy. */
  private shadowInto(p: Uint8Array, i: number, depth: number): Uint8Array {
    const b = value64(p, i);
    const s = this.shadowNode(b, depth);
    if (s.loc !== b) setValue64(p, i, s.loc);
    return s.data;
  }

  /** The node's entries [from, to) gained a referrer. */
  private incEntries(d: Uint8Array, from: number, to: number): void {
    if (isLeaf(d)) {
      const inc = this.vt.inc;
      if (inc) for (let i = from; i < to; i++) inc.call(this.vt, this.readValue(d, i));
    } else {
      for (let i = from; i < to; i++) this.tm.inc(value64(d, i));
    }
  }

  private newNode(flags: number, max: number, vs: number): { loc: number; data: Uint8Array } {
    const b = this.tm.newBlock(btreeNodeValidator);
    initNode(b.data, flags, max, vs, true);
    return { loc: b.location, data: b.data };
  }

  /** A sibling about to exchange entries with `c`: same kind of node or corruption. */
  private sibling(p: Uint8Array, i: number, c: Uint8Array, depth: number): Uint8Array {
    const b = value64(p, i);
    const d = this.node(b, depth);
    if (nodeFlags(d) !== nodeFlags(c) || valueSize(d) !== valueSize(c)) {
      throw corrupt(b, `sibling nodes at depth ${depth} differ in kind or value size`);
    }
    return d;
  }

  /** True when inserting `key` into `d` lands after its last entry (sequential append). */
  private appends(d: Uint8Array, key: number): boolean {
    const n = nrEntries(d);
    return isLeaf(d) ? key > keyAt(d, n - 1) : searchLe(d, n, key) === n - 1;
  }

  /**
   * The root is full: move its entries into two new children and make it an internal
   * node over them (the root keeps its block, like the kernel's split_beneath).
   */
  private splitBeneath(r: Uint8Array, key: number): void {
    const n = nrEntries(r);
    const max = maxEntries(r);
    const vs = valueSize(r);
    const flags = nodeFlags(r);
    // Appending: keep the left child full and give the right one just its minimum.
    const right = this.appends(r, key) ? Math.max(1, Math.floor(max / 3)) : n >> 1;
    const a = this.newNode(flags, max, vs);
    const b = this.newNode(flags, max, vs);
    copyEntries(a.data, r, 0, n - right, false);
    copyEntries(b.data, r, n - right, right, false);
    initNode(r, INTERNAL_NODE, this.internalMaxEntries, INTERNAL_VALUE_SIZE);
    setNrEntries(r, 2);
    setKey(r, 0, keyAt(a.data, 0));
    setValue64(r, 0, a.loc);
    setKey(r, 1, keyAt(b.data, 0));
    setValue64(r, 1, b.loc);
  }

  /**
   * Child `i` of `p` is full (and `p` has room): make room before descending, by
   * moving entries to a sibling or splitting. Returns the writable node that `key`
   * now belongs in, which has room for one more entry.
   */
  private makeRoom(p: Uint8Array, i: number, c: Uint8Array, key: number, depth: number): Uint8Array {
    const n = nrEntries(c);
    const max = maxEntries(c);
    const min = Math.floor(max / 3);
    const pn = nrEntries(p);
    if (this.appends(c, key)) {
      // Sequential writes: top up the left sibling completely rather than split evenly.
      if (i > 0) {
        const l = this.sibling(p, i - 1, c, depth);
        const m = Math.min(maxEntries(l) - nrEntries(l), n - min);
        if (m >= 1) {
          const ld = this.shadowInto(p, i - 1, depth);
          copyEntries(ld, c, 0, m, false);
          deleteRange(c, 0, m);
          setKey(p, i, keyAt(c, 0));
          return c;
        }
      }
      return this.split(p, i, c, Math.max(1, min), key);
    }
    if (i > 0) {
      const l = this.sibling(p, i - 1, c, depth);
      const ln = nrEntries(l);
      const lmax = maxEntries(l);
      if (lmax - ln >= 2) {
        const target = Math.min(lmax - 1, Math.ceil((ln + n) / 2));
        const m = target - ln;
        const ld = this.shadowInto(p, i - 1, depth);
        copyEntries(ld, c, 0, m, false);
        deleteRange(c, 0, m);
        setKey(p, i, keyAt(c, 0));
        return key < keyAt(c, 0) ? ld : c;
      }
    }
    if (i + 1 < pn) {
      const r = this.sibling(p, i + 1, c, depth);
      const rn = nrEntries(r);
      const rmax = maxEntries(r);
      if (rmax - rn >= 2) {
        const target = Math.min(rmax - 1, Math.ceil((rn + n) / 2));
        const m = target - rn;
        const rd = this.shadowInto(p, i + 1, depth);
        copyEntries(rd, c, n - m, m, true);
        deleteRange(c, n - m, n);
        setKey(p, i + 1, keyAt(rd, 0));
        return key >= keyAt(rd, 0) ? rd : c;
      }
    }
    return this.split(p, i, c, n >> 1, key);
  }

  /** Move the last `right` entries of child `i` into a new node inserted after it. */
  private split(p: Uint8Array, i: number, c: Uint8Array, right: number, key: number): Uint8Array {
    const n = nrEntries(c);
    const nn = this.newNode(nodeFlags(c), maxEntries(c), valueSize(c));
    copyEntries(nn.data, c, n - right, right, false);
    deleteRange(c, n - right, n);
    openGap(p, i + 1);
    setKey(p, i + 1, keyAt(nn.data, 0));
    setValue64(p, i + 1, nn.loc);
    return key >= keyAt(nn.data, 0) ? nn.data : c;
  }

  /**
   * Remove the keys in [start, to) from the leaf that holds `start` (which exists),
   * then restore the fill invariant up the spine. Values are released after the tree
   * is consistent again.
   */
  private removeSpan(root: number, start: number, to: number, keepValues: boolean): { root: number; count: number; values?: V[] } {
    const spine: SpineNode[] = [];
    const top = this.shadowNode(root, 0);
    let loc = top.loc;
    let d = top.data;
    for (let depth = 0; !isLeaf(d); depth++) {
      const i = searchLe(d, nrEntries(d), start);
      if (i < 0) throw corrupt(loc, `key ${start} was found by a lookup but lies below this node`);
      spine.push({ loc, data: d, idx: i });
      d = this.shadowInto(d, i, depth + 1);
      loc = value64(spine[spine.length - 1].data, i);
    }
    const n = nrEntries(d);
    const j = searchLe(d, n, start);
    if (j < 0 || keyAt(d, j) !== start) throw corrupt(loc, `key ${start} was found by a lookup but is not in its leaf`);
    const end = to >= KEY_END ? n : searchGe(d, n, to);
    const values: V[] = [];
    if (keepValues || this.vt.dec) for (let k = j; k < end; k++) values.push(this.readValue(d, k));
    deleteRange(d, j, end);

    let c = d;
    for (let l = spine.length - 1; l >= 0; l--) {
      const p = spine[l].data;
      const i = spine[l].idx;
      const cn = nrEntries(c);
      if (cn < Math.floor(maxEntries(c) / 3) && nrEntries(p) > 1) this.rebalanceChild(p, i, c, l + 1);
      else if (cn > 0) setKey(p, i, keyAt(c, 0));
      c = p;
    }
    let newRoot = top.loc;
    // An internal root left with one child hands the root over to that child.
    let rd = top.data;
    let depth = 0;
    while (!isLeaf(rd) && nrEntries(rd) === 1) {
      const child = value64(rd, 0);
      if (this.tm.dec(newRoot) > 0) this.tm.inc(child);
      newRoot = child;
      rd = this.node(child, ++depth);
    }
    if (this.vt.dec) for (const v of values) this.vt.dec(v);
    return { root: newRoot, count: end - j, values: keepValues ? values : undefined };
  }

  /** Child `i` of `p` (writable `c`) is below max/3: borrow from or merge with a sibling. */
  private rebalanceChild(p: Uint8Array, i: number, c: Uint8Array, depth: number): void {
    const cn = nrEntries(c);
    const cmax = maxEntries(c);
    if (i > 0) {
      const l = this.sibling(p, i - 1, c, depth);
      const ln = nrEntries(l);
      const lmax = maxEntries(l);
      const ld = this.shadowInto(p, i - 1, depth);
      if (ln + cn <= lmax) {
        // Merge into the left sibling; c's references move with its entries.
        copyEntries(ld, c, 0, cn, false);
        const cb = value64(p, i);
        deleteAt(p, i);
        this.tm.dec(cb);
      } else {
        const m = Math.min(cmax, (ln + cn) >> 1) - cn;
        copyEntries(c, ld, ln - m, m, true);
        deleteRange(ld, ln - m, ln);
        setKey(p, i, keyAt(c, 0));
      }
      return;
    }
    const rb = value64(p, 1);
    const r = this.sibling(p, 1, c, depth);
    const rn = nrEntries(r);
    if (cn + rn <= cmax) {
      // Absorb the right sibling without copying it first: if it stays alive
      // (shared), c is a new referrer of everything it takes.
      copyEntries(c, r, 0, rn, false);
      if (this.tm.refCount(rb) > 1) this.incEntries(c, cn, cn + rn);
      deleteAt(p, 1);
      this.tm.dec(rb);
    } else {
      const m = Math.min(cmax, (cn + rn) >> 1) - cn;
      const rd = this.shadowInto(p, 1, depth);
      copyEntries(c, rd, 0, m, false);
      deleteRange(rd, 0, m);
      setKey(p, 1, keyAt(rd, 0));
    }
    setKey(p, 0, keyAt(c, 0));
  }

  private delAt(b: number, depth: number): void {
    if (depth > MAX_BTREE_DEPTH) throw corrupt(b, `reached at depth ${depth}, deeper than ${MAX_BTREE_DEPTH} levels (a cycle?)`);
    const count = this.tm.refCount(b);
    if (count === 0) throw corrupt(b, 'referenced by the tree but free in the metadata space map');
    if (count > 1) {
      this.tm.dec(b);
      return;
    }
    const d = this.node(b, depth);
    const n = nrEntries(d);
    if (isLeaf(d)) {
      const dec = this.vt.dec;
      if (dec) {
        const values: V[] = [];
        for (let i = 0; i < n; i++) values.push(this.readValue(d, i));
        this.tm.dec(b);
        for (const v of values) dec.call(this.vt, v);
        return;
      }
    } else {
      const children: number[] = [];
      for (let i = 0; i < n; i++) children.push(value64(d, i));
      this.tm.dec(b);
      for (const ch of children) this.delAt(ch, depth + 1);
      return;
    }
    this.tm.dec(b);
  }

  /** The leaf and index of the largest key <= `key`. */
  private findLe(root: number, key: number): { d: Uint8Array; i: number } | undefined {
    const stack: Frame[] = [];
    let d = this.node(root, 0);
    for (;;) {
      const i = searchLe(d, nrEntries(d), key);
      if (i < 0) break;
      if (isLeaf(d)) return { d, i };
      stack.push({ d, i });
      d = this.node(value64(d, i), stack.length);
    }
    // Nothing <= key under d (a parent key may be lower than its child's first key):
    // the answer is the last entry of the nearest non-empty subtree to the left.
    for (;;) {
      let top = stack[stack.length - 1];
      while (top && top.i === 0) {
        stack.pop();
        top = stack[stack.length - 1];
      }
      if (!top) return undefined;
      top.i--;
      d = this.node(value64(top.d, top.i), stack.length);
      while (!isLeaf(d)) {
        const m = nrEntries(d);
        stack.push({ d, i: m - 1 });
        d = this.node(value64(d, m - 1), stack.length);
      }
      const m = nrEntries(d);
      if (m > 0) return { d, i: m - 1 };
    }
  }

  /** The leaf and index of the smallest key >= `key`, with the path (for iteration). */
  private findGe(root: number, key: number): { d: Uint8Array; i: number; stack: Frame[] } | undefined {
    const stack: Frame[] = [];
    let d = this.node(root, 0);
    while (!isLeaf(d)) {
      const i = Math.max(0, searchLe(d, nrEntries(d), key));
      stack.push({ d, i });
      d = this.node(value64(d, i), stack.length);
    }
    let i = searchGe(d, nrEntries(d), key);
    while (i >= nrEntries(d)) {
      const next = this.nextLeaf(stack);
      if (!next) return undefined;
      d = next;
      i = 0;
    }
    return { d, i, stack };
  }

  /** Advance a path to the first leaf after the current one, or undefined at the end. */
  private nextLeaf(stack: Frame[]): Uint8Array | undefined {
    for (;;) {
      let top = stack[stack.length - 1];
      while (top && top.i + 1 >= nrEntries(top.d)) {
        stack.pop();
        top = stack[stack.length - 1];
      }
      if (!top) return undefined;
      top.i++;
      let d = this.node(value64(top.d, top.i), stack.length);
      while (!isLeaf(d)) {
        stack.push({ d, i: 0 });
        d = this.node(value64(d, 0), stack.length);
      }
      if (nrEntries(d) > 0) return d;
    }
  }
}
