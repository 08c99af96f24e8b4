/**
 * The pool's mappings: the two-level mapping tree (device id -> root of that
 * device's subtree; virtual block -> block_time), with each device's subtree root
 * cached in its DeviceState, as the kernel's dm_pool_metadata keeps them.
 *
 * Contract:
 * - The top root lives in the superblock; this class reads and replaces it through
 *   `top`. A device's subtree root is looked up once, then kept in its state.
 * - Mutations below a device shadow the top-level path to it first, once per
 *   transaction (`prepared`), as the kernel's multi-level btree does top-down, so a
 *   metadata snapshot sharing top-level nodes makes the device's subtree (and data
 *   blocks) shared too. Mapped-block counts in the device details follow every
 *   insert and removal, in place (no object per mapping).
 * - Data references: the value type counts them (see ThinMetadata).
 * - A damaged node names its path from the top, "[dev 1, key 42], blocks 3 -> 17 ->
 *   25", and `details.device`.
 */
import { ThinError } from '../errors';
import type { BTree, LeafView } from '../pdata/btree/btree';
import { BTreeBuilder } from '../pdata/btree/builder';
import { MultiLevelBTree } from '../pdata/btree/multi-level';
import type { ValueType } from '../pdata/btree/value-type';
import type { TransactionManager } from '../pdata/transaction-manager';
import type { DeviceState, DeviceTable } from './device-table';
import { BLOCK_TIME_SIZE, BlockTime, readBlockTime, readBlockTimeFrom, writeBlockTime } from './format/block-time';

/** Data block references, as the mapping value type counts them. */
export interface DataRefs {
  inc(block: number): void;
  dec(block: number): void;
}

/**
 * block_time as the bottom level's value type: one data-block reference per value
 * held in a leaf (inc when a shared leaf is copied, dec when a value goes).
 */
export function countedBlockTime(refs: DataRefs): ValueType<BlockTime> {
  return {
    size: BLOCK_TIME_SIZE,
    read: readBlockTime,
    readFrom: readBlockTimeFrom,
    write: writeBlockTime,
    inc: (v) => refs.inc(v.block),
    dec: (v) => refs.dec(v.block),
    equal: (a, b) => a.block === b.block && a.time === b.time,
  };
}

/** Where the top root is kept (the open transaction's superblock). */
export interface TopRoot {
  get(): number;
  set(root: number): void;
}

export class MappingTree {
  private readonly mapping: MultiLevelBTree<BlockTime>;
  /** The bottom level: virtual block -> block_time. */
  private readonly bottom: BTree<BlockTime>;
  private readonly scratch: BlockTime = { block: 0, time: 0 };

  constructor(tm: TransactionManager, private readonly value: ValueType<BlockTime>, private readonly devices: DeviceTable, private readonly top: TopRoot) {
    this.mapping = new MultiLevelBTree(tm, 2, value, ['dev', 'key']);
    this.bottom = this.mapping.leafTree;
  }

  /** A bulk builder for one device's subtree (restore): values bring their data references. */
  builder(): BTreeBuilder<BlockTime> {
    return new BTreeBuilder(this.mapping.tm, this.value);
  }

  /** A new, empty top level (format). */
  empty(): number {
    return this.mapping.empty();
  }

  lookup(id: number, vblock: number): BlockTime | undefined {
    try {
      return this.bottom.lookup(this.root(id), vblock);
    } catch (e) {
      throw this.located(e, id);
    }
  }

  *entries(id: number, from?: number, to?: number): Generator<[number, BlockTime]> {
    try {
      yield* this.bottom.entries(this.root(id), from, to);
    } catch (e) {
      throw this.located(e, id);
    }
  }

  *leaves(id: number): Generator<LeafView> {
    try {
      yield* this.bottom.leaves(this.root(id));
    } catch (e) {
      throw this.located(e, id);
    }
  }

  highestKey(id: number): number | undefined {
    try {
      return this.bottom.highestKey(this.root(id));
    } catch (e) {
      throw this.located(e, id);
    }
  }

  /** Root of `id`'s subtree (E_NO_DEVICE if there is no such device). */
  root(id: number): number {
    return this.rootOf(id, this.devices.get(id));
  }

  /** A new empty subtree for a new device `id`; returns its root. */
  createSubtree(id: number): number {
    const root = this.bottom.empty();
    this.link(id, root);
    return root;
  }

  /** Make new device `id` share `originId`'s subtree (a snapshot); returns the shared root. */
  share(id: number, originId: number): number {
    const root = this.root(originId);
    this.mapping.tm.inc(root);
    this.link(id, root);
    return root;
  }

  /** Link `root` (whose reference the caller hands over) as device `id`'s subtree. */
  link(id: number, root: number): void {
    this.top.set(this.mapping.insertSubtree(this.top.get(), [id], root));
  }

  removeSubtree(id: number): void {
    this.top.set(this.mapping.removeSubtree(this.top.get(), [id]).root);
  }

  /** Drop one reference to a whole top-level tree (a released metadata snapshot's). */
  del(topRoot: number): void {
    this.mapping.del(topRoot);
  }

  /** Map `vblock` of `id` to `block` at `time`, replacing any mapping there. */
  insert(id: number, vblock: number, block: number, time: number): void {
    const st = this.devices.get(id);
    try {
      const oldRoot = this.prepareTopLevel(id, st);
      // One reused value object: insert packs it at once and keeps no reference to it.
      const bt = this.scratch;
      bt.block = block;
      bt.time = time;
      const root = this.bottom.insert(oldRoot, vblock, bt);
      if (root !== oldRoot) this.relinkRoot(id, st, root);
    } catch (e) {
      throw this.located(e, id);
    }
    if (this.bottom.lastInsertAdded) this.devices.countMapped(id, st, 1);
  }

  /** Unmap `vblock` of `id`; the old mapping, or undefined if none. */
  remove(id: number, vblock: number): BlockTime | undefined {
    const st = this.devices.get(id);
    let value: BlockTime | undefined;
    try {
      if (this.bottom.lookup(this.rootOf(id, st), vblock) === undefined) return undefined;
      const oldRoot = this.prepareTopLevel(id, st);
      const r = this.bottom.remove(oldRoot, vblock);
      if (r.root !== oldRoot) this.relinkRoot(id, st, r.root);
      value = r.value;
    } catch (e) {
      throw this.located(e, id);
    }
    this.devices.countMapped(id, st, -1);
    return value;
  }

  /** Unmap every block of `id` in [from, to); how many were mapped. */
  removeRange(id: number, from: number, to: number): number {
    const st = this.devices.get(id);
    let removed: number;
    try {
      const oldRoot = this.prepareTopLevel(id, st);
      const r = this.bottom.removeRange(oldRoot, from, to);
      if (r.root !== oldRoot) this.relinkRoot(id, st, r.root);
      removed = r.removed;
    } catch (e) {
      throw this.located(e, id);
    }
    if (removed) this.devices.countMapped(id, st, -removed);
    return removed;
  }

  /** `e` from device `id`'s subtree, with the top level's part of its path. */
  private located(e: unknown, id: number): unknown {
    return this.mapping.located(e, this.top.get(), [id]);
  }

  /** Root of `id`'s mapping subtree, looked up in the top level once and then cached. */
  private rootOf(id: number, st: DeviceState): number {
    if (st.root === undefined) {
      const r = this.mapping.subtree(this.top.get(), [id]);
      if (r === undefined) throw new ThinError('E_CORRUPT', `thin device ${id} has details but no mapping tree`, { device: id });
      st.root = r;
    }
    return st.root;
  }

  /**
   * Shadow the top-level path to `id` before touching its subtree, as the kernel's
   * multi-level btree does (top-down). When a held metadata snapshot shares the
   * top-level nodes, shadowing them increments the subtree roots they point to, so
   * the bottom level then sees its root as shared and increments the data blocks of
   * any leaf it copies. Done once per device per transaction. Returns the root.
   */
  private prepareTopLevel(id: number, st: DeviceState): number {
    const root = this.rootOf(id, st);
    if (!st.prepared) {
      this.top.set(this.mapping.shadowPath(this.top.get(), [id])!.root);
      st.prepared = true;
    }
    return root;
  }

  /** Link `id`'s new subtree root; the bottom level already shadowed (and decremented) the old one. */
  private relinkRoot(id: number, st: DeviceState, root: number): void {
    this.top.set(this.mapping.relink(this.top.get(), [id], root));
    st.root = root;
  }
}
