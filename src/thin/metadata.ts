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
 */
import { ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import { BlockManager } from '../pdata/block-manager';
import { BTree, LeafView } from '../pdata/btree/btree';
import { DataSpaceMap } from '../pdata/space-map/data-space-map';
import { MetadataSpaceMap } from '../pdata/space-map/metadata-space-map';
import { TransactionManager } from '../pdata/transaction-manager';
import { checkDataBlockSize, checkedInt, METADATA_BLOCK_SIZE } from '../units';
import { DeviceTable, MAX_DEVICE_ID, noDevice } from './device-table';
import { BlockTime, MAX_TIME } from './format/block-time';
import { DeviceDetails, deviceDetailsValue } from './format/device-details';
import {
  checkOpenable, copySuperblock, isUnformatted, newSuperblock, packSuperblock, snapshotSuperblockValidator, Superblock,
  superblockValidator, SUPERBLOCK_FLAG_NEEDS_CHECK, unpackSuperblock,
} from './format/superblock';
import { countedBlockTime, MappingTree } from './mapping-tree';
import type { BulkLoad, RestoreHeader } from './bulk-load';

export { MAX_DEVICE_ID };
/** Smallest metadata device thinsim formats (superblock, sm blocks, tree roots, room to work). */
export const MIN_METADATA_BLOCKS = 16;

export type { BlockTime, DeviceDetails, RestoreHeader, Superblock };

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

/** Both devices' sizes and use, in blocks (data blocks and 4 KiB metadata blocks). */
export interface SpaceUsage {
  dataBlocks: number; dataUsed: number; dataFree: number;
  metadataBlocks: number; metadataUsed: number; metadataFree: number;
}

export class ThinMetadata {
  readonly readOnly: boolean;
  /** Where `unmap` collects the data blocks whose count drops to 0 while it runs. */
  private freedSink: number[] | undefined;

  private readonly bm: BlockManager;
  private readonly tm: TransactionManager;
  /** Superblock as of the last commit (or open). */
  private committed!: Superblock;
  /** Working copy: roots, time, transaction id of the open transaction. */
  private sb!: Superblock;
  private metadataSm: MetadataSpaceMap | undefined;
  private dataSm: DataSpaceMap | undefined;
  private readonly devices_ = new DeviceTable();
  /** The two-level mapping tree: device id -> subtree root; virtual block -> block_time. */
  private readonly mappings_: MappingTree;
  private readonly detailsTree: BTree<DeviceDetails>;

  private constructor(device: BlockDevice, opts: OpenOptions) {
    this.bm = new BlockManager(device, { cacheBlocks: opts.cacheBlocks });
    this.tm = new TransactionManager(this.bm);
    this.readOnly = device.readOnly || !!opts.metadataSnap;
    const counted = countedBlockTime({
      inc: (b) => this.requireDataSm().inc(b),
      dec: (b) => {
        if (this.requireDataSm().dec(b) === 0) this.freedSink?.push(b);
      },
    });
    this.mappings_ = new MappingTree(this.tm, counted, this.devices_, {
      get: () => this.sb.dataMappingRoot,
      set: (root) => { this.sb.dataMappingRoot = root; },
    });
    this.detailsTree = new BTree(this.tm, deviceDetailsValue);
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
    md.sb.time = header.time;
    md.sb.transactionId = checkedInt(header.transactionId, 'transaction id');
    return {
      md,
      parts: {
        builder: () => md.mappings_.builder(),
        incData: (b) => md.requireDataSm().inc(b),
        adopt: (id, root, details) => md.adoptDevice(id, root, details),
        heldBlocks: () => md.tm.dirtyCount,
        spill: () => md.tm.spill(),
        spillInCommit: (blocks) => { md.tm.spillAbove = blocks; },
      },
    };
  }

  /** Open existing metadata. Throws E_CORRUPT for an unformatted (all-zero) or foreign device. */
  static open(device: BlockDevice, opts: OpenOptions = {}): ThinMetadata {
    if (device.size() < METADATA_BLOCK_SIZE) {
      throw new ThinError('E_TOO_SMALL', `metadata device ${device.name} is ${device.size()} bytes, smaller than one 4 KiB block: is this binary metadata?`, { file: device.name });
    }
    const md = new ThinMetadata(device, opts);
    const raw = md.bm.readRaw(0);
    if (isUnformatted(raw)) {
      throw new ThinError('E_CORRUPT', `metadata device ${device.name} is unformatted (block 0 is all zeros)`, { block: 0, kind: 'superblock', file: device.name });
    }
    const live = unpackSuperblock(md.bm.read(0, superblockValidator));
    checkOpenable(live, device.name, md.readOnly);
    md.committed = live;
    if (opts.metadataSnap) {
      const at = typeof opts.metadataSnap === 'number' ? opts.metadataSnap : live.heldRoot;
      if (!at) throw new ThinError('E_NO_METADATA_SNAP', `metadata on ${device.name} holds no metadata snapshot (held_root is 0)`, { file: device.name });
      const snap = unpackSuperblock(md.bm.read(at, snapshotSuperblockValidator));
      md.sb = { ...snap };
      md.loadDetails();
      return md;
    }
    md.sb = { ...live };
    md.loadSpaceMaps();
    md.loadDetails();
    return md;
  }

  /** True if `device` holds a dm-thin superblock (what the kernel checks before formatting). */
  static hasSuperblock(device: BlockDevice): boolean {
    if (device.size() < METADATA_BLOCK_SIZE) return false;
    const b = new Uint8Array(METADATA_BLOCK_SIZE);
    device.read(b, 0);
    return !isUnformatted(b);
  }

  // ---------------------------------------------------------------- queries

  get dataBlockSize(): number { return this.sb.dataBlockSize; }
  get nrDataBlocks(): number { return this.dataSm ? this.dataSm.nrBlocks : this.sb.dataSmRoot?.nrBlocks ?? 0; }
  /** Data blocks free now (blocks freed in this transaction count; they are allocatable after the commit). */
  get nrFreeDataBlocks(): number { return this.dataSm ? this.dataSm.nrFree : this.spaceUsage().dataFree; }
  get time(): number { return this.sb.time; }
  get transactionId(): number { return this.sb.transactionId; }
  get heldRoot(): number { return this.sb.heldRoot; }
  get needsCheck(): boolean { return (this.sb.flags & SUPERBLOCK_FLAG_NEEDS_CHECK) !== 0; }

  /** The open transaction's superblock (a copy). */
  superblock(): Superblock {
    return copySuperblock(this.sb);
  }

  /** The superblock as of the last commit (a copy): what is on disk now. */
  committedSuperblock(): Superblock {
    return copySuperblock(this.committed);
  }

  /**
   * Size and use of both devices, now. A metadata-snapshot view has no space maps
   * of its own: it reports the live pool's as of the last commit.
   */
  spaceUsage(): SpaceUsage {
    const d = this.dataSm ?? this.committed.dataSmRoot;
    const m = this.metadataSm ?? this.committed.metadataSmRoot;
    const dataBlocks = d?.nrBlocks ?? 0;
    const dataUsed = d?.nrAllocated ?? 0;
    const metadataBlocks = m?.nrBlocks ?? 0;
    const metadataUsed = m?.nrAllocated ?? 0;
    return { dataBlocks, dataUsed, dataFree: dataBlocks - dataUsed, metadataBlocks, metadataUsed, metadataFree: metadataBlocks - metadataUsed };
  }

  /** The reference count of data block `block` (mappings in distinct leaves, plus unmapped allocations). */
  dataRefCount(block: number): number {
    return this.requireDataSm().count(block);
  }

  /** Device ids in ascending order. */
  devices(): number[] {
    return this.devices_.ids();
  }

  hasDevice(id: number): boolean {
    return this.devices_.has(id);
  }

  /** Details of `id`; E_NO_DEVICE if it does not exist. */
  deviceDetails(id: number): DeviceDetails {
    return { ...this.devices_.get(id).details };
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
    this.assertWritable();
    this.devices_.checkNew(id);
    const root = this.mappings_.createSubtree(id);
    this.devices_.setDetails(id, { mappedBlocks: 0, transactionId: this.sb.transactionId, creationTime: this.sb.time, snapshottedTime: this.sb.time }, root);
  }

  createSnap(id: number, originId: number): void {
    this.assertWritable();
    this.devices_.checkNew(id);
    const originDetails = this.deviceDetails(originId);
    if (this.sb.time >= MAX_TIME) {
      throw new ThinError('E_RANGE', `pool time ${this.sb.time} has reached the 24-bit limit; no more snapshots can be taken`, { device: id });
    }
    const root = this.mappings_.share(id, originId);
    this.sb.time++;
    this.devices_.setDetails(originId, { ...originDetails, snapshottedTime: this.sb.time });
    this.devices_.setDetails(id, { mappedBlocks: originDetails.mappedBlocks, transactionId: this.sb.transactionId, creationTime: this.sb.time, snapshottedTime: this.sb.time }, root);
  }

  deleteDevice(id: number): void {
    this.assertWritable();
    if (!this.devices_.has(id)) throw noDevice(id);
    this.mappings_.removeSubtree(id);
    this.devices_.delete(id);
  }

  setTransactionId(current: number, next: number): void {
    this.assertWritable();
    if (current !== this.sb.transactionId) {
      throw new ThinError('E_TRANSACTION_MISMATCH', `set_transaction_id: the pool's transaction id is ${this.sb.transactionId}, not ${current}`, { expected: current, actual: this.sb.transactionId });
    }
    if (!Number.isSafeInteger(next) || next < 0) throw new ThinError('E_INVALID', `transaction id ${next} must be a whole number >= 0`);
    this.sb.transactionId = next;
  }

  // ---------------------------------------------------------------- mappings

  /** A free data block (count 1, owned by the caller until mapped), or -1 when out of data space. */
  allocateDataBlock(): number {
    this.assertWritable();
    return this.requireDataSm().tryAllocate();
  }

  /** Drop the caller's reference to a data block it allocated but did not map. */
  releaseDataBlock(block: number): void {
    this.assertWritable();
    this.requireDataSm().dec(block);
  }

  /**
   * Map `vblock` of `id` to `block` at the current pool time. Replaces (and drops
   * the reference of) any previous mapping.
   */
  insertMapping(id: number, vblock: number, block: number): void {
    this.assertWritable();
    if (!(block >= 0 && block < this.nrDataBlocks)) {
      this.devices_.get(id); // an unknown device is E_NO_DEVICE before a bad block is E_RANGE
      throw new ThinError('E_RANGE', `data block ${block} is beyond the data device (${this.nrDataBlocks} blocks)`, { device: id, block });
    }
    this.mappings_.insert(id, vblock, block, this.sb.time);
  }

  /** Unmap `vblock` of `id`; returns the old mapping, or undefined if none. */
  removeMapping(id: number, vblock: number): BlockTime | undefined {
    this.assertWritable();
    return this.mappings_.remove(id, vblock);
  }

  /** Unmap every block of `id` in [from, to); returns how many were mapped. */
  removeRange(id: number, from: number, to: number): number {
    return this.unmap(id, from, to).removed;
  }

  /** `removeRange`, also returning the data blocks whose count dropped to 0 (what discard passdown punches). */
  unmap(id: number, from: number, to: number): { removed: number; freed: number[] } {
    this.assertWritable();
    const freed: number[] = (this.freedSink = []);
    try {
      return { removed: to - from === 1 ? Number(this.mappings_.remove(id, from) !== undefined) : this.mappings_.removeRange(id, from, to), freed };
    } finally {
      this.freedSink = undefined;
    }
  }

  // ---------------------------------------------------------------- metadata snapshot

  /** Take the (single) metadata snapshot: commits, then copies the superblock (spec §8.1). */
  reserveMetadataSnap(): number {
    this.assertWritable();
    if (this.sb.heldRoot) {
      throw new ThinError('E_METADATA_SNAP_EXISTS', `a metadata snapshot is already held at block ${this.sb.heldRoot}; release it first`, { block: this.sb.heldRoot });
    }
    this.commit();
    const copy = this.tm.newBlock(snapshotSuperblockValidator);
    packSuperblock({ ...this.sb, blocknr: copy.location, dataSmRoot: undefined, metadataSmRoot: undefined, heldRoot: 0 }, copy.data);
    this.tm.inc(this.sb.dataMappingRoot);
    this.tm.inc(this.sb.deviceDetailsRoot);
    this.sb.heldRoot = copy.location;
    this.commit();
    return copy.location;
  }

  releaseMetadataSnap(): void {
    this.assertWritable();
    const at = this.sb.heldRoot;
    if (!at) throw new ThinError('E_NO_METADATA_SNAP', 'no metadata snapshot is held', {});
    const snap = unpackSuperblock(this.tm.read(at, snapshotSuperblockValidator));
    this.sb.heldRoot = 0;
    this.mappings_.del(snap.dataMappingRoot);
    this.detailsTree.del(snap.deviceDetailsRoot);
    this.tm.dec(at);
  }

  // ---------------------------------------------------------------- sizes

  /** Grow the data space map to `nrBlocks` (the caller grew the data device). */
  growData(nrBlocks: number): void {
    this.assertWritable();
    const sm = this.requireDataSm();
    if (nrBlocks < sm.nrBlocks) {
      throw new ThinError('E_UNSUPPORTED', `cannot shrink the data device from ${sm.nrBlocks} to ${nrBlocks} blocks; dm-thin pools only grow`, { from: sm.nrBlocks, to: nrBlocks });
    }
    sm.extend(nrBlocks);
  }

  /** Grow the metadata device to `bytes` (whole 4 KiB blocks) and its space map with it. */
  growMetadata(bytes: number): void {
    this.assertWritable();
    const sm = this.requireMetadataSm();
    const blocks = Math.floor(checkedInt(bytes, 'metadata size') / METADATA_BLOCK_SIZE);
    const now = this.bm.nrBlocks;
    if (blocks < now) {
      throw new ThinError('E_UNSUPPORTED', `cannot shrink the metadata device from ${now * METADATA_BLOCK_SIZE} to ${bytes} bytes`, { from: now, to: blocks });
    }
    this.bm.device.grow(blocks * METADATA_BLOCK_SIZE);
    sm.extend(this.bm.nrBlocks);
  }

  // ---------------------------------------------------------------- transactions

  commit(): void {
    this.tm.commit(this.sealTransaction(), superblockValidator);
    this.transactionCommitted();
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
    const written = this.tm.commitAsync(this.sealTransaction(), superblockValidator);
    return written.then(() => this.transactionCommitted());
  }

  /** Drop the open transaction and reload the committed state from disk. */
  abort(): void {
    this.tm.abort();
    this.bm.dropCache();
    this.sb = { ...this.committed };
    this.loadSpaceMaps();
    this.loadDetails();
  }

  /** Does the open transaction hold changes? */
  get dirty(): boolean {
    return this.tm.dirtyCount > 0 || this.devices_.dirty ||
      this.sb.transactionId !== this.committed.transactionId || this.sb.heldRoot !== this.committed.heldRoot;
  }

  /**
   * Set needs_check in the committed superblock, in place, as the kernel does after
   * a failed metadata operation; the open transaction is dropped first.
   */
  setNeedsCheck(): void {
    this.tm.abort();
    const sb = { ...this.committed, flags: this.committed.flags | SUPERBLOCK_FLAG_NEEDS_CHECK };
    this.bm.write(0, packSuperblock(sb), superblockValidator);
    this.bm.sync();
    this.committed = sb;
    this.sb = { ...sb };
  }

  close(): void {
    this.bm.device.close();
  }

  // ---------------------------------------------------------------- internals

  /** Fold the transaction into metadata blocks: details, data then metadata space map; returns the packed superblock. */
  private sealTransaction(): Uint8Array {
    this.assertWritable();
    this.sb.deviceDetailsRoot = this.devices_.flush(this.detailsTree, this.sb.deviceDetailsRoot);
    this.sb.dataSmRoot = this.requireDataSm().commit();
    this.sb.metadataSmRoot = this.requireMetadataSm().commit();
    return packSuperblock(this.sb);
  }

  /** The superblock is durable: blocks freed in the transaction become allocatable. */
  private transactionCommitted(): void {
    this.dataSm!.markCommitted();
    this.metadataSm!.markCommitted();
    this.devices_.committed();
    this.committed = { ...this.sb };
  }

  /** A new pool in memory: nothing is written until the first commit. */
  private static formatUncommitted(device: BlockDevice, opts: FormatOptions): ThinMetadata {
    checkDataBlockSize(opts.dataBlockSize);
    const nrBlocks = Math.floor(device.size() / METADATA_BLOCK_SIZE);
    if (nrBlocks < MIN_METADATA_BLOCKS) {
      throw new ThinError('E_TOO_SMALL', `metadata device ${device.name} has ${nrBlocks} blocks of 4 KiB; thinsim needs at least ${MIN_METADATA_BLOCKS} (64 KiB)`, { file: device.name });
    }
    const md = new ThinMetadata(device, opts);
    md.metadataSm = MetadataSpaceMap.format(md.tm, nrBlocks);
    md.dataSm = DataSpaceMap.format(md.tm, opts.nrDataBlocks);
    const sb = newSuperblock(opts.dataBlockSize, md.metadataSm.nrBlocks, md.mappings_.empty(), md.detailsTree.empty());
    md.sb = sb;
    md.committed = { ...sb };
    return md;
  }

  /**
   * Install a device whose mapping subtree was built in bulk (restore). The root
   * and the data blocks it maps already carry their references.
   */
  private adoptDevice(id: number, root: number, details: DeviceDetails): void {
    this.assertWritable();
    this.devices_.checkNew(id);
    this.mappings_.link(id, root);
    this.devices_.setDetails(id, details, root);
  }

  private loadSpaceMaps(): void {
    const { metadataSmRoot, dataSmRoot } = this.committed;
    if (!metadataSmRoot || !dataSmRoot) {
      throw new ThinError('E_CORRUPT', 'superblock has no space-map roots', { block: 0, kind: 'superblock' });
    }
    // Read-only opens load the counts too, so reports (status, ls) are exact; only a
    // writable one becomes the transaction manager's allocator (once: abort reloads it).
    if (this.metadataSm) this.metadataSm.reload(metadataSmRoot);
    else this.metadataSm = MetadataSpaceMap.open(this.tm, metadataSmRoot, { readOnly: this.readOnly });
    this.dataSm = DataSpaceMap.open(this.tm, dataSmRoot);
  }

  private loadDetails(): void {
    this.devices_.load(this.detailsTree.entries(this.sb.deviceDetailsRoot));
  }

  private requireDataSm(): DataSpaceMap {
    if (!this.dataSm) throw new ThinError('E_READ_ONLY', 'metadata snapshot views have no data space map');
    return this.dataSm;
  }

  private requireMetadataSm(): MetadataSpaceMap {
    if (!this.metadataSm) throw new ThinError('E_READ_ONLY', 'metadata snapshot views have no metadata space map');
    return this.metadataSm;
  }

  private assertWritable(): void {
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `metadata ${this.bm.device.name} is open read-only`, { file: this.bm.device.name });
  }
}
