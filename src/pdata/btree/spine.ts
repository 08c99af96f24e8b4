/**
 * The spine: what every B-tree path shares, reading or writing. Reading a node
 * checks what the validator cannot (depth, value size of this tree, an empty
 * internal node); shadowing a node on the way down (the kernel's shadow_spine)
 * copies it when it is shared and passes its references on to the copy.
 *
 * Contract: functions over a TreeCore (the BTree itself); they allocate nothing on
 * the read path. Damage throws E_CHECKSUM or E_CORRUPT naming the block.
 */
import { ThinError } from '../../errors';
import type { TransactionManager } from '../transaction-manager';
import { getU32 } from '../layout';
import {
  btreeNodeValidator, initNode, isLeaf, LEAF_NODE, MAX_BTREE_DEPTH, NODE_FLAGS, NODE_NR_ENTRIES, NODE_VALUE_SIZE,
  nodeFlags, nrEntries, setValue64, value64, valueSize,
} from './node';
import type { ValueType } from './value-type';

/** What the lookup, insert and remove code needs of a tree (BTree provides it). */
export interface TreeCore<V> {
  readonly tm: TransactionManager;
  readonly vt: ValueType<V>;
  /** max_entries of the leaves this tree creates. */
  readonly leafMaxEntries: number;
  /** max_entries of the internal nodes this tree creates. */
  readonly internalMaxEntries: number;
  /** What a key names, in error paths. */
  readonly keyLabel: string;
  /** Value `i` of leaf `d` (allocation-free for number values). */
  readValue(d: Uint8Array, i: number): V;
}

export interface NodeRef {
  loc: number;
  data: Uint8Array;
}

export function corrupt(b: number, what: string): ThinError {
  return new ThinError('E_CORRUPT', `btree node (block ${b}): ${what}`, { block: b, kind: 'btree node' });
}

export function outsideParent(b: number, first: number, last: number, lo: number, hi: number): ThinError {
  return corrupt(b, `keys [${first}, ${last}] lie outside the parent's range [${lo}, ${hi})`);
}

export function tooDeep(b: number, depth: number): ThinError {
  return corrupt(b, `reached at depth ${depth}, deeper than ${MAX_BTREE_DEPTH} levels (a cycle?)`);
}

/** Read node `b` at `depth`, with the checks every path makes. */
export function readNode<V>(t: TreeCore<V>, b: number, depth: number): Uint8Array {
  if (depth > MAX_BTREE_DEPTH) throw tooDeep(b, depth);
  const d = t.tm.read(b, btreeNodeValidator);
  checkShape(t, d, b);
  return d;
}

function checkShape<V>(t: TreeCore<V>, d: Uint8Array, b: number): void {
  if (getU32(d, NODE_FLAGS) === LEAF_NODE) {
    const vs = getU32(d, NODE_VALUE_SIZE);
    if (vs !== t.vt.size) throw corrupt(b, `leaf with value_size ${vs}, this tree stores ${t.vt.size}-byte values`);
  } else if (getU32(d, NODE_NR_ENTRIES) === 0) {
    throw corrupt(b, 'internal node with no entries');
  }
}

/** Shadow `b` (copy-on-write) and inc what the copy points to if `b` was shared. */
export function shadowNode<V>(t: TreeCore<V>, b: number, depth: number): NodeRef {
  if (depth > MAX_BTREE_DEPTH) throw tooDeep(b, depth);
  const { block, incChildren } = t.tm.shadow(b, btreeNodeValidator);
  checkShape(t, block.data, b);
  if (incChildren) incEntries(t, block.data, 0, nrEntries(block.data));
  return { loc: block.location, data: block.data };
}

/** Shadow child `i` of writable node `p` and point `p` at the copy. */
export function shadowInto<V>(t: TreeCore<V>, p: Uint8Array, i: number, depth: number): Uint8Array {
  const b = value64(p, i);
  const s = shadowNode(t, b, depth);
  if (s.loc !== b) setValue64(p, i, s.loc);
  return s.data;
}

/** The node's entries [from, to) gained a referrer. */
export function incEntries<V>(t: TreeCore<V>, d: Uint8Array, from: number, to: number): void {
  if (isLeaf(d)) {
    const inc = t.vt.inc;
    if (inc) for (let i = from; i < to; i++) inc.call(t.vt, t.readValue(d, i));
  } else {
    for (let i = from; i < to; i++) t.tm.inc(value64(d, i));
  }
}

/** A fresh node of this kind, with its header written. */
export function newNode<V>(t: TreeCore<V>, flags: number, max: number, vs: number): NodeRef {
  const b = t.tm.newBlock(btreeNodeValidator);
  initNode(b.data, flags, max, vs, true);
  return { loc: b.location, data: b.data };
}

/** Child `i` of `p`, a sibling about to exchange entries with `c`: same kind of node or corruption. */
export function sibling<V>(t: TreeCore<V>, p: Uint8Array, i: number, c: Uint8Array, depth: number): Uint8Array {
  const b = value64(p, i);
  const d = readNode(t, b, depth);
  if (nodeFlags(d) !== nodeFlags(c) || valueSize(d) !== valueSize(c)) {
    throw corrupt(b, `sibling nodes at depth ${depth} differ in kind or value size`);
  }
  return d;
}
