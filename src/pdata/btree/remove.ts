/**
 * B-tree removal (see btree.ts for the contract): remove a key or a range, then
 * restore the fill invariant bottom-up by borrowing from or merging with a sibling,
 * and hand an internal root left with one child over to that child. `del` drops a
 * reference to a whole tree, releasing what it alone held.
 */
import {
  checkKey, copyEntries, deleteAt, deleteRange, isLeaf, keyAt, MAX_BTREE_DEPTH, maxEntries, nrEntries, searchGe, searchLe,
  setKey, value64,
} from './node';
import { findGe, KEY_END, lookup } from './lookup';
import { corrupt, incEntries, readNode, shadowInto, shadowNode, sibling, tooDeep, TreeCore } from './spine';

interface SpineNode {
  loc: number;
  data: Uint8Array;
  /** Index of the child taken below this node. */
  idx: number;
}

/** Remove `key`; its value is released with vt.dec and returned. */
export function remove<V>(t: TreeCore<V>, root: number, key: number): { root: number; value: V | undefined } {
  checkKey(key);
  if (lookup(t, root, key) === undefined) return { root, value: undefined };
  const r = removeSpan(t, root, key, key + 1, true);
  return { root: r.root, value: r.values![0] };
}

/** Remove every key in [from, to). */
export function removeRange<V>(t: TreeCore<V>, root: number, from: number, to: number): { root: number; removed: number } {
  checkKey(from);
  if (to !== KEY_END) checkKey(to);
  let removed = 0;
  while (from < to) {
    const f = findGe(t, root, from);
    if (!f) break;
    const first = keyAt(f.d, f.i);
    if (first >= to) break;
    const r = removeSpan(t, root, first, to, false);
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
export function del<V>(t: TreeCore<V>, root: number): void {
  delAt(t, root, 0);
}

/**
 * Remove the keys in [start, to) from the leaf that holds `start` (which exists),
 * then restore the fill invariant up the spine. Values are released after the tree
 * is consistent again.
 */
function removeSpan<V>(t: TreeCore<V>, root: number, start: number, to: number, keepValues: boolean): { root: number; count: number; values?: V[] } {
  const spine: SpineNode[] = [];
  const top = shadowNode(t, root, 0);
  let loc = top.loc;
  let d = top.data;
  for (let depth = 0; !isLeaf(d); depth++) {
    const i = searchLe(d, nrEntries(d), start);
    if (i < 0) throw corrupt(loc, `key ${start} was found by a lookup but lies below this node`);
    spine.push({ loc, data: d, idx: i });
    d = shadowInto(t, d, i, depth + 1);
    loc = value64(spine[spine.length - 1].data, i);
  }
  const n = nrEntries(d);
  const j = searchLe(d, n, start);
  if (j < 0 || keyAt(d, j) !== start) throw corrupt(loc, `key ${start} was found by a lookup but is not in its leaf`);
  const end = to >= KEY_END ? n : searchGe(d, n, to);
  const values: V[] = [];
  if (keepValues || t.vt.dec) for (let k = j; k < end; k++) values.push(t.readValue(d, k));
  deleteRange(d, j, end);

  let c = d;
  for (let l = spine.length - 1; l >= 0; l--) {
    const p = spine[l].data;
    const i = spine[l].idx;
    const cn = nrEntries(c);
    if (cn < Math.floor(maxEntries(c) / 3) && nrEntries(p) > 1) rebalanceChild(t, p, i, c, l + 1);
    else if (cn > 0) setKey(p, i, keyAt(c, 0));
    c = p;
  }
  let newRoot = top.loc;
  // An internal root left with one child hands the root over to that child.
  let rd = top.data;
  let depth = 0;
  while (!isLeaf(rd) && nrEntries(rd) === 1) {
    const child = value64(rd, 0);
    if (t.tm.dec(newRoot) > 0) t.tm.inc(child);
    newRoot = child;
    rd = readNode(t, child, ++depth);
  }
  if (t.vt.dec) for (const v of values) t.vt.dec(v);
  return { root: newRoot, count: end - j, values: keepValues ? values : undefined };
}

/** Child `i` of `p` (writable `c`) is below max/3: borrow from or merge with a sibling. */
function rebalanceChild<V>(t: TreeCore<V>, p: Uint8Array, i: number, c: Uint8Array, depth: number): void {
  const cn = nrEntries(c);
  const cmax = maxEntries(c);
  if (i > 0) {
    const l = sibling(t, p, i - 1, c, depth);
    const ln = nrEntries(l);
    const lmax = maxEntries(l);
    const ld = shadowInto(t, p, i - 1, depth);
    if (ln + cn <= lmax) {
      // Merge into the left sibling; c's references move with its entries.
      copyEntries(ld, c, 0, cn, false);
      const cb = value64(p, i);
      deleteAt(p, i);
      t.tm.dec(cb);
    } else {
      const m = Math.min(cmax, (ln + cn) >> 1) - cn;
      copyEntries(c, ld, ln - m, m, true);
      deleteRange(ld, ln - m, ln);
      setKey(p, i, keyAt(c, 0));
    }
    return;
  }
  const rb = value64(p, 1);
  const r = sibling(t, p, 1, c, depth);
  const rn = nrEntries(r);
  if (cn + rn <= cmax) {
    // Absorb the right sibling without copying it first: if it stays alive
    // (shared), c is a new referrer of everything it takes.
    copyEntries(c, r, 0, rn, false);
    if (t.tm.refCount(rb) > 1) incEntries(t, c, cn, cn + rn);
    deleteAt(p, 1);
    t.tm.dec(rb);
  } else {
    const m = Math.min(cmax, (cn + rn) >> 1) - cn;
    const rd = shadowInto(t, p, 1, depth);
    copyEntries(c, rd, 0, m, false);
    deleteRange(rd, 0, m);
    setKey(p, 1, keyAt(rd, 0));
  }
  setKey(p, 0, keyAt(c, 0));
}

function delAt<V>(t: TreeCore<V>, b: number, depth: number): void {
  if (depth > MAX_BTREE_DEPTH) throw tooDeep(b, depth);
  const count = t.tm.refCount(b);
  if (count === 0) throw corrupt(b, 'referenced by the tree but free in the metadata space map');
  if (count > 1) {
    t.tm.dec(b);
    return;
  }
  const d = readNode(t, b, depth);
  const n = nrEntries(d);
  if (isLeaf(d)) {
    const dec = t.vt.dec;
    if (dec) {
      const values: V[] = [];
      for (let i = 0; i < n; i++) values.push(t.readValue(d, i));
      t.tm.dec(b);
      for (const v of values) dec.call(t.vt, v);
      return;
    }
  } else {
    const children: number[] = [];
    for (let i = 0; i < n; i++) children.push(value64(d, i));
    t.tm.dec(b);
    for (const ch of children) delAt(t, ch, depth + 1);
    return;
  }
  t.tm.dec(b);
}
