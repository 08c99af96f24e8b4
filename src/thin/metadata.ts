/**
 * Thin metadata: the kernel's dm_pool_metadata in userspace. This is the
 * interface file of the thin layer.
 *
 * Contract:
 * - One ThinMetadata owns one metadata device and everything on it: its block and
 *   transaction managers, space maps, trees and superblock are private. Callers get
 *   what they need as values (`superblock()`, `spaceUsage()`, `mappingLeaves()`),
 *   and change things only through the operations below.
 * - Everything it changes lives in one transaction until `commit()`, which writes
 *   the data space map, the metadata space map and finally the superblock; a crash
 *   before the superblock write leaves the previous commit intact. `commitAsync()`
 *   is the same off the event loop (the pool's commit; see it for what may run
 *   meanwhile). `abort()` drops the transaction.
 * - Devices (ids 0..2^24-1) live in two trees: the two-level mapping tree (device
 *   id -> subtree root; virtual block -> block_time) and the details tree.
 *   `createSnap` is O(1): the snapshot shares the origin's subtree root (count +1),
 *   and copy-on-write of metadata happens on the next change to either device.
 * - Data block reference counts follow the kernel: +1 per distinct leaf that maps a
 *   block. `insertMapping` takes over the caller's reference to the data block (the
 *   one `allocateDataBlock` gave), and replacing or removing a mapping drops one.
 * - Misuse (unknown device, id in use, wrong transaction id) throws a ThinError with
 *   a stable code and changes nothing.
 * - Only thin/ and pdata/ are used below; nothing here does data I/O.
 * - Its parts: metadata-state.ts (the managers, both superblocks, the space maps,
 *   the device table; open, format, commit, abort, growth), mapping-tree.ts (the
 *   mappings), metadata-snap.ts (the metadata snapshot). This file composes them and
 *   holds the device and mapping operations; it adds no call layer per mapping.
 */
import { ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import type { LeafView } from '../pdata/btree/btree';
import { checkedInt, METADATA_BLOCK_SIZE } from '../units';
import { MAX_DEVICE_ID, noDevice } from './device-table';
import { BlockTime, MAX_TIME } from './format/block-time';
import type { DeviceDetails } from './format/device-details';
import { copySuperblock, isUnformatted, Superblock, SUPERBLOCK_FLAG_NEEDS_CHECK } from './format/superblock';
import { countedBlockTime, MappingTree } from './mapping-tree';
import { reserveMetadataSnap, releaseMetadataSnap } from './metadata-snap';
import { MetadataState, MIN_METADATA_BLOCKS, type SpaceUsage } from './metadata-state';
import type { BulkLoad, RestoreHeader } from './bulk-load';

export { MAX_DEVICE_ID, MIN_METADATA_BLOCKS };
export type { BlockTime, DeviceDetails, RestoreHeader, SpaceUsage, Superblock };

export interface OpenOptions {
  /** Blocks of metadata to cache (default 16384 = 64 MiB). */
  cacheBlocks?: number;
  /** Open the trees of the held metadata snapshot instead of the live ones (read-only). */
  metadataSnap?: boolean | number;
}

export interface FormatOptions extends OpenOptions {
  /** Data block size in 512-byte sectors (128 = 64 KiB). */
  dataBlockSize: number;
  nrDataBlocks: number;
}

export class ThinMetadata {
  readonly readOnly: boolean;
  /** Where `unmap` collects the data blocks whose count drops to 0 while it runs. */
  private freedSink: number[] | undefined;

  /** Managers, superblocks, space maps, device table and the transaction (metadata-state.ts). */
  private readonly st: MetadataState;
  /** The two-level mapping tree: device id -> subtree root; virtual block -> block_time. */
  private readonly mappings_: MappingTree;

  private constructor(device: BlockDevice, opts: OpenOptions) {
    const st = (this.st = new MetadataState(device, opts.cacheBlocks, !!opts.metadataSnap));
    this.readOnly = st.readOnly;
    const counted = countedBlockTime({
      inc: (b) => st.requireDataSm().inc(b),
      dec: (b) => {
        if (st.requireDataSm().dec(b) === 0) this.freedSink?.push(b);
      },
    });
    this.mappings_ = new MappingTree(st.tm, counted, st.devices, {
      get: () => st.sb.dataMappingRoot,
      set: (root) => { st.sb.dataMappingRoot = root; },
    });
  }

  /** Format `device` as a new, empty pool metadata device (the kernel's format path). */
  static format(device: BlockDevice, opts: FormatOptions): ThinMetadata {
    const md = ThinMetadata.formatUncommitted(device, opts);
    md.commit();
    return md;
  }

  /**
   * Start a bulk load (restore) of a whole pool into `device`: formatted as with
   * `format`, but nothing reaches the superblock until the caller commits (`md.commit()`);
   * restorer.ts drives it.
   */
  static bulkLoad(device: BlockDevice, header: RestoreHeader, opts: OpenOptions = {}): { md: ThinMetadata; parts: BulkLoad } {
    const md = ThinMetadata.formatUncommitted(device, { ...opts, dataBlockSize: header.dataBlockSize, nrDataBlocks: header.nrDataBlocks });
    if (!Number.isInteger(header.time) || header.time < 0 || header.time > MAX_TIME) {
      throw new ThinError('E_RANGE', `pool time ${header.time} is outside 0..${MAX_TIME} (24 bits)`, { value: header.time });
    }
    const st = md.st;
    st.sb.time = header.time;
    st.sb.transactionId = checkedInt(header.transactionId, 'transaction id');
    return {
      md,
      parts: {
        builder: () => md.mappings_.builder(),
        incData: (b) => st.requireDataSm().inc(b),
        adopt: (id, root, details) => md.adoptDevice(id, root, details),
        heldBlocks: () => st.tm.dirtyCount,
        spill: () => st.tm.spill(),
        spillInCommit: (blocks) => { st.tm.spillAbove = blocks; },
      },
    };
  }

  /** Open existing metadata. Throws E_CORRUPT for an unformatted (all-zero) or foreign device. */
  static open(device: BlockDevice, opts: OpenOptions = {}): ThinMetadata {
    const md = new ThinMetadata(device, opts);
    md.st.load(opts.metadataSnap);
    return md;
  }

  /** True if `device` holds a dm-thin superblock (what the kernel checks before formatting). */
  static hasSuperblock(device: BlockDevice): boolean {
    if (device.size() < METADATA_BLOCK_SIZE) return false;
    const b = new Uint8Array(METADATA_BLOCK_SIZE);
    device.read(b, 0);
    return !isUnformatted(b);
  }

  /** A new pool in memory: nothing is written until the first commit. */
  private static formatUncommitted(device: BlockDevice, opts: FormatOptions): ThinMetadata {
    const md = new ThinMetadata(device, opts);
    md.st.format(opts.dataBlockSize, opts.nrDataBlocks, () => md.mappings_.empty());
    return md;
  }

  // ---------------------------------------------------------------- queries

  get dataBlockSize(): number { return this.st.sb.dataBlockSize; }
  get nrDataBlocks(): number { return this.st.nrDataBlocks; }
  /** Data blocks free now (blocks freed in this transaction count; they are allocatable after the commit). */
  get nrFreeDataBlocks(): number { return this.st.dataSm ? this.st.dataSm.nrFree : this.st.spaceUsage().dataFree; }
  get time(): number { return this.st.sb.time; }
  get transactionId(): number { return this.st.sb.transactionId; }
  get heldRoot(): number { return this.st.sb.heldRoot; }
  get needsCheck(): boolean { return (this.st.sb.flags & SUPERBLOCK_FLAG_NEEDS_CHECK) !== 0; }

  /** The open transaction's superblock (a copy). */
  superblock(): Superblock {
    return copySuperblock(this.st.sb);
  }

  /** The superblock as of the last commit (a copy): what is on disk now. */
  committedSuperblock(): Superblock {
    return copySuperblock(this.st.committed);
  }

  /**
   * Size and use of both devices, now. A metadata-snapshot view has no space maps
   * of its own: it reports the live pool's as of the last commit.
   */
  spaceUsage(): SpaceUsage {
    return this.st.spaceUsage();
  }

  /** The reference count of data block `block` (mappings in distinct leaves, plus unmapped allocations). */
  dataRefCount(block: number): number {
    return this.st.requireDataSm().count(block);
  }

  /** Device ids in ascending order. */
  devices(): number[] {
    return this.st.devices.ids();
  }

  hasDevice(id: number): boolean {
    return this.st.devices.has(id);
  }

  /** Details of `id`; E_NO_DEVICE if it does not exist. */
  deviceDetails(id: number): DeviceDetails {
    return { ...this.st.devices.get(id).details };
  }

  lookup(id: number, vblock: number): BlockTime | undefined {
    return this.mappings_.lookup(id, vblock);
  }

  /** Mappings of `id` in ascending virtual block order, optionally within [from, to). */
  mappings(id: number, from?: number, to?: number): Generator<[number, BlockTime]> {
    return this.mappings_.entries(id, from, to);
  }

  /**
   * `id`'s mapping leaves in key order, for bulk readers (dump, ls, delta): each a
   * LeafView whose values are block_time (decode with format/block-time's field
   * readers). The view is reused per leaf; do not change the pool while iterating.
   */
  mappingLeaves(id: number): Generator<LeafView> {
    return this.mappings_.leaves(id);
  }

  highestMapped(id: number): number | undefined {
    return this.mappings_.highestKey(id);
  }

  /** Is the mapping shared with a snapshot? (kernel rule: mapped before the device's last snapshot) */
  isShared(id: number, m: BlockTime): boolean {
    return m.time < this.deviceDetails(id).snapshottedTime;
  }

  // ---------------------------------------------------------------- device operations

  createThin(id: number): void {
    const st = this.st;
    st.assertWritable();
    st.devices.checkNew(id);
    const root = this.mappings_.createSubtree(id);
    st.devices.setDetails(id, { mappedBlocks: 0, transactionId: st.sb.transactionId, creationTime: st.sb.time, snapshottedTime: st.sb.time }, root);
  }

  createSnap(id: number, originId: number): void {
    const st = this.st;
    st.assertWritable();
    st.devices.checkNew(id);
    const originDetails = this.deviceDetails(originId);
    if (st.sb.time >= MAX_TIME) {
      throw new ThinError('E_RANGE', `pool time ${st.sb.time} has reached the 24-bit limit; no more snapshots can be taken`, { device: id });
    }
    const root = this.mappings_.share(id, originId);
    st.sb.time++;
    st.devices.setDetails(originId, { ...originDetails, snapshottedTime: st.sb.time });
    st.devices.setDetails(id, { mappedBlocks: originDetails.mappedBlocks, transactionId: st.sb.transactionId, creationTime: st.sb.time, snapshottedTime: st.sb.time }, root);
  }

  deleteDevice(id: number): void {
    this.st.assertWritable();
    if (!this.st.devices.has(id)) throw noDevice(id);
    this.mappings_.removeSubtree(id);
    this.st.devices.delete(id);
  }

  setTransactionId(current: number, next: number): void {
    const sb = this.st.sb;
    this.st.assertWritable();
    if (current !== sb.transactionId) {
      throw new ThinError('E_TRANSACTION_MISMATCH', `set_transaction_id: the pool's transaction id is ${sb.transactionId}, not ${current}`, { expected: current, actual: sb.transactionId });
    }
    if (!Number.isSafeInteger(next) || next < 0) throw new ThinError('E_INVALID', `transaction id ${next} must be a whole number >= 0`);
    sb.transactionId = next;
  }

  /**
   * Install a device whose mapping subtree was built in bulk (restore). The root
   * and the data blocks it maps already carry their references.
   */
  private adoptDevice(id: number, root: number, details: DeviceDetails): void {
    this.st.assertWritable();
    this.st.devices.checkNew(id);
    this.mappings_.link(id, root);
    this.st.devices.setDetails(id, details, root);
  }

  // ---------------------------------------------------------------- mappings

  /** A free data block (count 1, owned by the caller until mapped), or -1 when out of data space. */
  allocateDataBlock(): number {
    this.st.assertWritable();
    return this.st.requireDataSm().tryAllocate();
  }

  /** Drop the caller's reference to a data block it allocated but did not map. */
  releaseDataBlock(block: number): void {
    this.st.assertWritable();
    this.st.requireDataSm().dec(block);
  }

  /**
   * Map `vblock` of `id` to `block` at the current pool time. Replaces (and drops
   * the reference of) any previous mapping.
   */
  insertMapping(id: number, vblock: number, block: number): void {
    const st = this.st;
    st.assertWritable();
    if (!(block >= 0 && block < st.nrDataBlocks)) {
      st.devices.get(id); // an unknown device is E_NO_DEVICE before a bad block is E_RANGE
      throw new ThinError('E_RANGE', `data block ${block} is beyond the data device (${st.nrDataBlocks} blocks)`, { device: id, block });
    }
    this.mappings_.insert(id, vblock, block, st.sb.time);
  }

  /** Unmap `vblock` of `id`; returns the old mapping, or undefined if none. */
  removeMapping(id: number, vblock: number): BlockTime | undefined {
    this.st.assertWritable();
    return this.mappings_.remove(id, vblock);
  }

  /** Unmap every block of `id` in [from, to); returns how many were mapped. */
  removeRange(id: number, from: number, to: number): number {
    return this.unmap(id, from, to).removed;
  }

  /** `removeRange`, also returning the data blocks whose count dropped to 0 (what discard passdown punches). */
  unmap(id: number, from: number, to: number): { removed: number; freed: number[] } {
    this.st.assertWritable();
    const freed: number[] = (this.freedSink = []);
    try {
      return { removed: to - from === 1 ? Number(this.mappings_.remove(id, from) !== undefined) : this.mappings_.removeRange(id, from, to), freed };
    } finally {
      this.freedSink = undefined;
    }
  }

  // ---------------------------------------------------------------- metadata snapshot (metadata-snap.ts)

  /** Take the (single) metadata snapshot: commits, then copies the superblock (spec §8.1). */
  reserveMetadataSnap(): number {
    return reserveMetadataSnap(this.st);
  }

  releaseMetadataSnap(): void {
    releaseMetadataSnap(this.st, this.mappings_);
  }

  // ---------------------------------------------------------------- sizes

  /** Grow the data space map to `nrBlocks` (the caller grew the data device). */
  growData(nrBlocks: number): void {
    this.st.growData(nrBlocks);
  }

  /** Grow the metadata device to `bytes` (whole 4 KiB blocks) and its space map with it. */
  growMetadata(bytes: number): void {
    this.st.growMetadata(bytes);
  }

  // ---------------------------------------------------------------- transactions (metadata-state.ts)

  commit(): void {
    this.st.commit();
  }

  /**
   * `commit()` without blocking the event loop (the pool's commit). The in-memory
   * part runs before it returns and throws synchronously as `commit()` does (e.g.
   * E_NO_METADATA_SPACE): details, space maps and the superblock are packed and the
   * blocks to write chosen. The promise settles once the superblock is durable;
   * until then the caller must start no mutation and no other commit (the pool's
   * gate serialises them), while lookups see the new state. Freed blocks become
   * allocatable only after it settles. A failed write rejects with the superblock
   * on disk untouched (the previous commit stays, as after a crash).
   */
  commitAsync(): Promise<void> {
    return this.st.commitAsync();
  }

  /** Drop the open transaction and reload the committed state from disk. */
  abort(): void {
    this.st.abort();
  }

  /** Does the open transaction hold changes? */
  get dirty(): boolean {
    return this.st.dirty;
  }

  /**
   * Set needs_check in the committed superblock, in place, as the kernel does after
   * a failed metadata operation; the open transaction is dropped first.
   */
  setNeedsCheck(): void {
    this.st.setNeedsCheck();
  }

  close(): void {
    this.st.bm.device.close();
  }
}
