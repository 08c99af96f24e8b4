/**
 * B-tree insert (see btree.ts for the contract): a top-down descent that shadows
 * the spine and makes room in a full child before entering it (moving entries to a
 * sibling, or splitting), so a leaf always has room when the descent reaches it.
 *
 * Sequential inserts are the common case for thin devices, so an insert that lands
 * after the last entry of the rightmost leaf so far leaves an append hint, and the
 * next ascending key goes straight into that leaf (no descent); nodes split on an
 * append keep the left side full. Everything the hint relies on is stated where it
 * is kept.
 */
import { ThinError } from '../../errors';
import {
  checkKey, copyEntries, deleteRange, initNode, INTERNAL_NODE, INTERNAL_VALUE_SIZE, isLeaf, KEY_SIZE, keyAt, maxEntries,
  NODE_HEADER_SIZE, nodeFlags, nrEntries, openGap, searchLe, setKey, setNrEntries, setValue64, valueOffset, valueSize,
} from './node';
import { KEY_END, lookup } from './lookup';
import { newNode, shadowInto, shadowNode, sibling, TreeCore } from './spine';

/** Inserts into one tree; holds its value scratch buffer and its append hint. */
export class Inserter<V> {
  private readonly t: TreeCore<V>;
  /** The value being inserted, packed once before anything is shadowed. */
  private readonly wbuf: Uint8Array;
  private readonly wdv: DataView;

  constructor(t: TreeCore<V>) {
    this.t = t;
    this.wbuf = new Uint8Array(t.vt.size);
    this.wdv = new DataView(this.wbuf.buffer);
  }

  /** Forget the append hint (any change to the tree other than an insert). */
  dropHint(): void {
    this.hintLeaf = undefined;
  }

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
    if (h !== undefined && root === this.hintRoot && this.hintEpoch === this.t.tm.epoch &&
        key > this.hintLast && key < this.hintHi && this.hintN < this.hintMax) {
      const n = this.hintN;
      // Pack straight into the free slot past nr_entries; a value that does not fit
      // throws with the slot zeroed again and nothing else touched.
      const vo = NODE_HEADER_SIZE + KEY_SIZE * this.hintMax + this.t.vt.size * n;
      try {
        this.t.vt.write(this.hintDv!, vo, value);
      } catch (e) {
        h.fill(0, vo, vo + this.t.vt.size);
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
    this.t.vt.write(this.wdv, 0, value);
    const top = shadowNode(this.t, root, 0);
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
      let child = shadowInto(this.t, d, i, depth + 1);
      if (nrEntries(child) >= maxEntries(child)) child = this.makeRoom(d, i, child, key, depth + 1);
      // makeRoom may have moved entries between siblings: find the child's slot again.
      const j = searchLe(d, nrEntries(d), key);
      if (j + 1 < nrEntries(d)) hi = keyAt(d, j + 1);
      d = child;
    }
    const n = nrEntries(d);
    const i = searchLe(d, n, key);
    if (i >= 0 && keyAt(d, i) === key) {
      const old = this.t.readValue(d, i);
      this.putValue(d, valueOffset(d, i));
      this.lastInsertAdded = false;
      if (this.t.vt.dec && !(this.t.vt.equal && this.t.vt.equal(old, value))) this.t.vt.dec(old);
    } else {
      // The descent made room in every node it entered; a full leaf here is our bug,
      // and writing on would overrun the keys into the values.
      if (n >= maxEntries(d)) throw new ThinError('E_INVARIANT', `btree leaf is full (${n} entries) after the descent made room for key ${key}`, { kind: 'btree node' });
      this.lastInsertAdded = true;
      openGap(d, i + 1);
      setKey(d, i + 1, key);
      this.putValue(d, valueOffset(d, i + 1));
      if (i + 1 === n) {
        this.hintLeaf = d;
        this.hintDv = new DataView(d.buffer, d.byteOffset, d.byteLength);
        this.hintRoot = top.loc;
        this.hintEpoch = this.t.tm.epoch;
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
    if (lookup(this.t, root, key) === undefined) return undefined;
    const top = shadowNode(this.t, root, 0);
    let d = top.data;
    for (let depth = 0; !isLeaf(d); depth++) {
      const i = searchLe(d, nrEntries(d), key);
      d = shadowInto(this.t, d, i, depth + 1);
    }
    const i = searchLe(d, nrEntries(d), key);
    const nv = fn(this.t.readValue(d, i));
    this.t.vt.write(this.wdv, 0, nv);
    this.putValue(d, valueOffset(d, i));
    return top.loc;
  }

  /** Copy the packed value (wbuf) to offset `o` of writable node `d`. */
  private putValue(d: Uint8Array, o: number): void {
    const w = this.wbuf;
    // A byte loop beats TypedArray.set for the 8-byte values of the hot trees.
    if (w.length <= 16) for (let j = 0; j < w.length; j++) d[o + j] = w[j];
    else d.set(w, o);
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
    const a = newNode(this.t, flags, max, vs);
    const b = newNode(this.t, flags, max, vs);
    copyEntries(a.data, r, 0, n - right, false);
    copyEntries(b.data, r, n - right, right, false);
    initNode(r, INTERNAL_NODE, this.t.internalMaxEntries, INTERNAL_VALUE_SIZE);
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
        const l = sibling(this.t, p, i - 1, c, depth);
        const m = Math.min(maxEntries(l) - nrEntries(l), n - min);
        if (m >= 1) {
          const ld = shadowInto(this.t, p, i - 1, depth);
          copyEntries(ld, c, 0, m, false);
          deleteRange(c, 0, m);
          setKey(p, i, keyAt(c, 0));
          return c;
        }
      }
      return this.split(p, i, c, Math.max(1, min), key);
    }
    if (i > 0) {
      const l = sibling(this.t, p, i - 1, c, depth);
      const ln = nrEntries(l);
      const lmax = maxEntries(l);
      if (lmax - ln >= 2) {
        const target = Math.min(lmax - 1, Math.ceil((ln + n) / 2));
        const m = target - ln;
        const ld = shadowInto(this.t, p, i - 1, depth);
        copyEntries(ld, c, 0, m, false);
        deleteRange(c, 0, m);
        setKey(p, i, keyAt(c, 0));
        return key < keyAt(c, 0) ? ld : c;
      }
    }
    if (i + 1 < pn) {
      const r = sibling(this.t, p, i + 1, c, depth);
      const rn = nrEntries(r);
      const rmax = maxEntries(r);
      if (rmax - rn >= 2) {
        const target = Math.min(rmax - 1, Math.ceil((rn + n) / 2));
        const m = target - rn;
        const rd = shadowInto(this.t, p, i + 1, depth);
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
    const nn = newNode(this.t, nodeFlags(c), maxEntries(c), valueSize(c));
    copyEntries(nn.data, c, n - right, right, false);
    deleteRange(c, n - right, n);
    openGap(p, i + 1);
    setKey(p, i + 1, keyAt(nn.data, 0));
    setValue64(p, i + 1, nn.loc);
    return key >= keyAt(nn.data, 0) ? nn.data : c;
  }
}
