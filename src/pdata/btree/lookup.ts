/**
 * B-tree lookup and iteration: every read-only walk of a tree (see btree.ts for
 * the contract). Reads allocate nothing per node; iteration keeps one frame per
 * level and, for bulk readers, one reused LeafView per walk.
 */
import { getU32 } from '../layout';
import {
  checkKey, isLeaf, keyAt, LEAF_NODE, NODE_FLAGS, NODE_NR_ENTRIES, nrEntries, rawKeyAt, searchGe, searchLe, value64,
  valueOffset, valueSize,
} from './node';
import { locate } from './error-path';
import { corrupt, outsideParent, readNode, TreeCore } from './spine';
import type { ValueType } from './value-type';

/** One past the largest key: the default exclusive end of a range. */
export const KEY_END = 2 ** 53;

/** Called for each leaf in key order with its raw block; return false to stop. */
export type LeafVisitor = (leafData: Uint8Array, nrEntries: number, leafBlock: number) => void | false;
/** Called once per distinct node; return false to skip that node's children. */
export type NodeVisitor = (block: number, data: Uint8Array, depth: number) => void | false;

/** One level of a path down the tree: a node and the entry taken in it. */
export interface Frame {
  d: Uint8Array;
  i: number;
}

/**
 * One leaf as a bulk reader sees it: `count` entries, `key(i)` decoded (and checked)
 * here, value i left as the value type's bytes at `valueOffset(i)` of `bytes`, for
 * its own field readers. Views are reused: valid until the iterator moves.
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

/** The value at `key` (see the contract in btree.ts for what a lookup checks). */
export function lookup<V>(t: TreeCore<V>, root: number, key: number): V | undefined {
  checkKey(key);
  let b = root;
  let lo = 0;
  let hi = KEY_END;
  for (let depth = 0; ; depth++) {
    const d = readNode(t, b, depth);
    const n = getU32(d, NODE_NR_ENTRIES);
    if (n === 0) return undefined; // an empty leaf (readNode rejects empty internal nodes)
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
        if (kg === key) return t.readValue(d, g);
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
    if (leaf) return kl === key ? t.readValue(d, l) : undefined;
    lo = kl;
    hi = kh;
    b = value64(d, l);
  }
}

/** The entry with the largest key <= `key`. */
export function lookupLe<V>(t: TreeCore<V>, root: number, key: number): [number, V] | undefined {
  checkKey(key);
  const f = findLe(t, root, key);
  return f ? [keyAt(f.d, f.i), t.readValue(f.d, f.i)] : undefined;
}

/** The entry with the smallest key >= `key`. */
export function lookupGe<V>(t: TreeCore<V>, root: number, key: number): [number, V] | undefined {
  checkKey(key);
  const f = findGe(t, root, key);
  return f ? [keyAt(f.d, f.i), t.readValue(f.d, f.i)] : undefined;
}

export function highestKey<V>(t: TreeCore<V>, root: number): number | undefined {
  // Straight down the right edge, so a last key beyond 2^53 throws E_CORRUPT.
  let d = readNode(t, root, 0);
  for (let depth = 1; !isLeaf(d); depth++) d = readNode(t, value64(d, nrEntries(d) - 1), depth);
  const n = nrEntries(d);
  if (n > 0) return keyAt(d, n - 1);
  const f = findLe(t, root, KEY_END - 1); // an empty rightmost leaf (damaged or foreign tree)
  return f ? keyAt(f.d, f.i) : undefined;
}

export function lowestKey<V>(t: TreeCore<V>, root: number): number | undefined {
  const f = findGe(t, root, 0);
  return f ? keyAt(f.d, f.i) : undefined;
}

/**
 * Entries with from <= key < to, in key order. An error names the path to the
 * failing node and, as its key, the last one reached (the caller's place).
 */
export function* entries<V>(t: TreeCore<V>, root: number, from: number, to: number): Generator<[number, V]> {
  checkKey(from);
  let at = from;
  try {
    const f = findGe(t, root, from);
    if (!f) return;
    const stack = f.stack;
    let d = f.d;
    let i = f.i;
    for (;;) {
      const n = nrEntries(d);
      const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
      const vs = t.vt.size;
      let off = valueOffset(d, i);
      for (; i < n; i++, off += vs) {
        const k = keyAt(d, i);
        if (k >= to) return;
        at = k;
        yield [k, t.vt.read(dv, off)];
      }
      const next = nextLeaf(t, stack);
      if (!next) return;
      d = next;
      i = 0;
    }
  } catch (e) {
    throw locate(t, e, root, at);
  }
}

/** The non-empty leaves in key order, through one reused LeafView. */
export function* leaves<V>(t: TreeCore<V>, root: number): Generator<LeafView> {
  const view = new LeafView();
  try {
    const f = findGe(t, root, 0);
    if (!f) return;
    for (let d: Uint8Array | undefined = f.d; d !== undefined; d = nextLeaf(t, f.stack)) {
      view.show(d);
      yield view;
    }
  } catch (e) {
    throw locate(t, e, root, view.count > 0 ? rawKeyAt(view.bytes, view.count - 1) : undefined);
  }
}

/** Every leaf in key order, as raw blocks. Returns false if `fn` stopped. */
export function visitLeaves<V>(t: TreeCore<V>, root: number, fn: LeafVisitor): boolean {
  const visit = (b: number, depth: number): boolean => {
    const d = readNode(t, b, depth);
    const n = nrEntries(d);
    if (isLeaf(d)) return fn(d, n, b) !== false;
    for (let i = 0; i < n; i++) if (!visit(value64(d, i), depth + 1)) return false;
    return true;
  };
  return visit(root, 0);
}

/** Every distinct node once, pre-order; a node that is its own ancestor throws E_CORRUPT. */
export function walkNodes<V>(t: TreeCore<V>, root: number, fn: NodeVisitor): void {
  const seen = new Set<number>();
  const path = new Set<number>();
  const visit = (b: number, depth: number): void => {
    if (path.has(b)) throw corrupt(b, `is its own ancestor (a cycle at depth ${depth})`);
    if (seen.has(b)) return;
    seen.add(b);
    const d = readNode(t, b, depth);
    if (fn(b, d, depth) === false || isLeaf(d)) return;
    path.add(b);
    const n = nrEntries(d);
    for (let i = 0; i < n; i++) visit(value64(d, i), depth + 1);
    path.delete(b);
  };
  visit(root, 0);
}

/** The leaf and index of the largest key <= `key`. */
export function findLe<V>(t: TreeCore<V>, root: number, key: number): { d: Uint8Array; i: number } | undefined {
  const stack: Frame[] = [];
  let d = readNode(t, root, 0);
  for (;;) {
    const i = searchLe(d, nrEntries(d), key);
    if (i < 0) break;
    if (isLeaf(d)) return { d, i };
    stack.push({ d, i });
    d = readNode(t, value64(d, i), stack.length);
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
    d = readNode(t, value64(top.d, top.i), stack.length);
    while (!isLeaf(d)) {
      const m = nrEntries(d);
      stack.push({ d, i: m - 1 });
      d = readNode(t, value64(d, m - 1), stack.length);
    }
    const m = nrEntries(d);
    if (m > 0) return { d, i: m - 1 };
  }
}

/** The leaf and index of the smallest key >= `key`, with the path (for iteration). */
export function findGe<V>(t: TreeCore<V>, root: number, key: number): { d: Uint8Array; i: number; stack: Frame[] } | undefined {
  const stack: Frame[] = [];
  let d = readNode(t, root, 0);
  while (!isLeaf(d)) {
    const i = Math.max(0, searchLe(d, nrEntries(d), key));
    stack.push({ d, i });
    d = readNode(t, value64(d, i), stack.length);
  }
  let i = searchGe(d, nrEntries(d), key);
  while (i >= nrEntries(d)) {
    const next = nextLeaf(t, stack);
    if (!next) return undefined;
    d = next;
    i = 0;
  }
  return { d, i, stack };
}

/** Advance a path to the first leaf after the current one, or undefined at the end. */
export function nextLeaf<V>(t: TreeCore<V>, stack: Frame[]): Uint8Array | undefined {
  for (;;) {
    let top = stack[stack.length - 1];
    while (top && top.i + 1 >= nrEntries(top.d)) {
      stack.pop();
      top = stack[stack.length - 1];
    }
    if (!top) return undefined;
    top.i++;
    let d = readNode(t, value64(top.d, top.i), stack.length);
    while (!isLeaf(d)) {
      stack.push({ d, i: 0 });
      d = readNode(t, value64(d, 0), stack.length);
    }
    if (nrEntries(d) > 0) return d;
  }
}
