/**
 * Value types: what a btree stores in its leaves and how those values hold references
 * (the kernel's dm_btree_value_type).
 *
 * Contract: `read`/`write` pack one value of exactly `size` bytes at a DataView offset;
 * `write` throws E_RANGE for a value that does not fit. `inc`/`dec` are called by the
 * tree when a leaf that holds the value gains or loses a referrer: `inc` when a shared
 * leaf is copied (shadowed with incChildren), `dec` when a value is overwritten or
 * removed, or its leaf is deleted. A value inserted into a tree brings one reference
 * with it (the tree does not call `inc` on insert). `equal` says two values are the
 * same reference, so overwriting one with the other releases nothing.
 */
import { ThinError } from '../../errors';
import { readU64, writeU64 } from '../layout';
import type { TransactionManager } from '../transaction-manager';

export interface ValueType<V> {
  /** Bytes per value on disk (the node's value_size). */
  readonly size: number;
  read(dv: DataView, offset: number): V;
  write(dv: DataView, offset: number, v: V): void;
  /** Optional fast path: read a value straight from a node's bytes (no DataView, no copy). */
  readFrom?(d: Uint8Array, offset: number): V;
  inc?(v: V): void;
  dec?(v: V): void;
  equal?(a: V, b: V): boolean;
}

const TWO32 = 2 ** 32;

function readU64Value(dv: DataView, offset: number): number {
  return readU64(dv, offset, 'u64 btree value');
}

function writeU64Value(dv: DataView, offset: number, v: number): void {
  writeU64(dv, offset, v, 'u64 btree value');
}

/** Plain u64 (no references), as a checked number. */
export const u64Value: ValueType<number> = {
  size: 8,
  read: readU64Value,
  write: writeU64Value,
  equal: (a, b) => a === b,
};

/** Plain u32 (e.g. the ref-count overflow tree). */
export const u32Value: ValueType<number> = {
  size: 4,
  read: (dv, o) => dv.getUint32(o, true),
  write: (dv, o, v) => {
    if (!Number.isInteger(v) || v < 0 || v >= TWO32) {
      throw new ThinError('E_RANGE', `u32 btree value must be a whole number from 0 to 2^32-1, got ${v}`, { value: v });
    }
    dv.setUint32(o, v, true);
  },
  equal: (a, b) => a === b,
};

/** Something that can drop one reference to a tree root (BTree implements it). */
export interface SubtreeOwner {
  /** Drop one reference to `root`; on the last one, release everything under it. */
  del(root: number): void;
}

/**
 * A u64 metadata block pointer, counted in the metadata space map: used for the roots
 * of lower-level trees (the top level of the mapping tree). `subtree` says what the
 * pointer points to, so that dropping the last reference frees the whole subtree;
 * pass a function when the owner is built after this value type (it is called
 * lazily, on the first `dec`). Without `subtree` the pointee is a single block with
 * no children of its own.
 */
export function blockRefValue(tm: TransactionManager, subtree?: SubtreeOwner | (() => SubtreeOwner)): ValueType<number> {
  let owner: SubtreeOwner | undefined = typeof subtree === 'function' ? undefined : subtree;
  return {
    size: 8,
    read: readU64Value,
    write: writeU64Value,
    inc: (b) => tm.inc(b),
    dec: (b) => {
      if (owner === undefined && typeof subtree === 'function') owner = subtree();
      if (owner !== undefined) owner.del(b);
      else tm.dec(b);
    },
    // No `equal` (like the kernel's le64 type): inserting a pointer always hands its
    // reference to the tree and releases the old one, even when both are the same
    // block, so re-linking a subtree never needs special care from the caller.
  };
}
