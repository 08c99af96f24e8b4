/**
 * Thin metadata: the kernel's dm_pool_metadata in userspace. This is the
 * interface file of the thin layer.
 *
 * Contract:
 * - One ThinMetadata owns one metadata device. Everything it changes lives in one
 *   transaction until `commit()`, which writes the data space map, the metadata
 *   space map and finally the superblock; a crash before the superblock write
 *   leaves the previous commit intact. `abort()` drops the transaction.
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
import { MultiLevelBTree } from '../pdata/btree/multi-level';
import type { ValueType } from '../pdata/btree/value-type';
import { DataSpaceMap } from '../pdata/space-map/data-space-map';
import { MetadataSpaceMap } from '../pdata/space-map/metadata-space-map';
import { TransactionManager } from '../pdata/transaction-manager';
import { checkDataBlockSize, METADATA_BLOCK_SIZE } from '../units';
import { BLOCK_TIME_SIZE, BlockTime, MAX_TIME, readBlockTime, readBlockTimeFrom, writeBlockTime } from './format/block-time';
import { DeviceDetails, deviceDetailsValue } from './format/device-details';
import {
  isUnformatted, packSuperblock, snapshotSuperblockValidator, Superblock, superblockValidator,
  SUPERBLOCK_FLAG_NEEDS_CHECK, THIN_MAGIC, THIN_VERSION, unpackSuperblock,
} from './format/superblock';

export const MAX_DEVICE_ID = 2 ** 24 - 1;
/** Smallest metadata device thinsim formats (superblock, sm blocks, tree roots, room to work). */
export const MIN_METADATA_BLOCKS = 16;

export type { BlockTime, DeviceDetails, Superblock };

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
  /** Leave the new pool uncommitted (nothing is written until `commit()`); restore uses this. */
  deferCommit?: boolean;
}

export class ThinMetadata {
  readonly bm: BlockManager;
  readonly tm: TransactionManager;
  /** Superblock as of the last commit (or open). */
  committed!: Superblock;
  /** Working copy: roots, time, transaction id of the open transaction. */
  sb!: Superblock;
  metadataSm: MetadataSpaceMap | undefined;
  dataSm: DataSpaceMap | undefined;
  readonly readOnly: boolean;
  /** Called when a data block's count drops to 0 (discard passdown). */
  onDataBlockFreed: ((block: number) => void) | undefined;

  /** Every device: its details (in memory until commit) and cached mapping state. */
  private states = new Map<number, DeviceState>();
  /** Devices whose details changed in this transaction (their `changed` flag is set). */
  private changedDetails = new Set<number>();
  private deletedDetails = new Set<number>();
  private readonly scratch: BlockTime = { block: 0, time: 0 };
  /** The two-level mapping tree: device id -> subtree root; virtual block -> block_time. */
  readonly mapping: MultiLevelBTree<BlockTime>;
  /** Its bottom level, counting data references. */
  readonly mappingTree: BTree<BlockTime>;
  /** The bottom level's value type (data block references in the data space map). */
  readonly mappingValue: ValueType<BlockTime>;
  readonly detailsTree: BTree<DeviceDetails>;

  private constructor(device: BlockDevice, opts: OpenOptions) {
    this.bm = new BlockManager(device, { cacheBlocks: opts.cacheBlocks });
    this.tm = new TransactionManager(this.bm);
    this.readOnly = device.readOnly || !!opts.metadataSnap;
    const dataValue: ValueType<BlockTime> = {
      size: BLOCK_TIME_SIZE,
      read: readBlockTime,
      readFrom: readBlockTimeFrom,
      write: writeBlockTime,
      inc: (v) => this.requireDataSm().inc(v.block),
      dec: (v) => {
        if (this.requireDataSm().dec(v.block) === 0 && this.onDataBlockFreed) this.onDataBlockFreed(v.block);
      },
      equal: (a, b) => a.block === b.block && a.time === b.time,
    };
    this.mappingValue = dataValue;
    this.mapping = new MultiLevelBTree(this.tm, 2, dataValue);
    this.mappingTree = this.mapping.leafTree;
    this.detailsTree = new BTree(this.tm, deviceDetailsValue);
  }

  /** Format `device` as a new, empty pool metadata device (the kernel's format path). */
  static format(device: BlockDevice, opts: FormatOptions): ThinMetadata {
    checkDataBlockSize(opts.dataBlockSize);
    const nrBlocks = Math.floor(device.size() / METADATA_BLOCK_SIZE);
    if (nrBlocks < MIN_METADATA_BLOCKS) {
      throw new ThinError('E_TOO_SMALL', `metadata device ${device.name} has ${nrBlocks} blocks of 4 KiB; thinsim needs at least ${MIN_METADATA_BLOCKS} (64 KiB)`, { file: device.name });
    }
    const md = new ThinMetadata(device, opts);
    md.metadataSm = MetadataSpaceMap.format(md.tm, nrBlocks);
    md.dataSm = DataSpaceMap.format(md.tm, opts.nrDataBlocks);
    const sb: Superblock = {
      flags: 0, blocknr: 0, uuid: new Uint8Array(16), magic: THIN_MAGIC, version: THIN_VERSION, time: 0, transactionId: 0,
      heldRoot: 0, dataSmRoot: undefined, metadataSmRoot: undefined,
      dataMappingRoot: md.mapping.empty(), deviceDetailsRoot: md.detailsTree.empty(),
      dataBlockSize: opts.dataBlockSize, metadataBlockSize: 8, metadataNrBlocks: md.metadataSm.nrBlocks,
      compatFlags: 0, compatRoFlags: 0, incompatFlags: 0,
    };
    md.sb = sb;
    md.committed = { ...sb };
    if (!opts.deferCommit) md.commit();
    return md;
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
    checkSuperblock(live, device.name, md.readOnly);
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
  get time(): number { return this.sb.time; }
  get transactionId(): number { return this.sb.transactionId; }
  get heldRoot(): number { return this.sb.heldRoot; }
  get needsCheck(): boolean { return (this.sb.flags & SUPERBLOCK_FLAG_NEEDS_CHECK) !== 0; }

  /** Device ids in ascending order. */
  devices(): number[] {
    return [...this.states.keys()].sort((a, b) => a - b);
  }

  hasDevice(id: number): boolean {
    return this.states.has(id);
  }

  /** Details of `id`; E_NO_DEVICE if it does not exist. */
  deviceDetails(id: number): DeviceDetails {
    return { ...this.state(id).details };
  }

  /** Root of `id`'s mapping subtree. */
  deviceRoot(id: number): number {
    return this.rootOf(id, this.state(id));
  }

  lookup(id: number, vblock: number): BlockTime | undefined {
    return this.mappingTree.lookup(this.deviceRoot(id), vblock);
  }

  /** Mappings of `id` in ascending virtual block order, optionally within [from, to). */
  *mappings(id: number, from?: number, to?: number): Generator<[number, BlockTime]> {
    yield* this.mappingTree.entries(this.deviceRoot(id), from, to);
  }

  /**
   * `id`'s mapping leaves in key order, for bulk readers (dump, ls, delta): each a
   * LeafView whose values are block_time (decode with format/block-time's field
   * readers). The view is reused per leaf; do not change the pool while iterating.
   */
  mappingLeaves(id: number): Generator<LeafView> {
    return this.mappingTree.leaves(this.deviceRoot(id));
  }

  highestMapped(id: number): number | undefined {
    return this.mappingTree.highestKey(this.deviceRoot(id));
  }

  /** Is the mapping shared with a snapshot? (kernel rule: mapped before the device's last snapshot) */
  isShared(id: number, m: BlockTime): boolean {
    return m.time < this.deviceDetails(id).snapshottedTime;
  }

  // ---------------------------------------------------------------- device operations

  createThin(id: number): void {
    this.assertWritable();
    checkDeviceId(id);
    if (this.states.has(id)) throw deviceExists(id);
    const root = this.mappingTree.empty();
    this.sb.dataMappingRoot = this.mapping.insertSubtree(this.sb.dataMappingRoot, [id], root);
    this.setDetails(id, { mappedBlocks: 0, transactionId: this.sb.transactionId, creationTime: this.sb.time, snapshottedTime: this.sb.time }, root);
  }

  createSnap(id: number, origin: number): void {
    this.assertWritable();
    checkDeviceId(id);
    if (this.states.has(id)) throw deviceExists(id);
    const originDetails = this.deviceDetails(origin);
    if (this.sb.time >= MAX_TIME) {
      throw new ThinError('E_RANGE', `pool time ${this.sb.time} has reached the 24-bit limit; no more snapshots can be taken`, { device: id });
    }
    const root = this.deviceRoot(origin);
    this.tm.inc(root);
    this.sb.dataMappingRoot = this.mapping.insertSubtree(this.sb.dataMappingRoot, [id], root);
    this.sb.time++;
    this.setDetails(origin, { ...originDetails, snapshottedTime: this.sb.time });
    this.setDetails(id, { mappedBlocks: originDetails.mappedBlocks, transactionId: this.sb.transactionId, creationTime: this.sb.time, snapshottedTime: this.sb.time }, root);
  }

  deleteDevice(id: number): void {
    this.assertWritable();
    if (!this.states.has(id)) throw noDevice(id);
    this.sb.dataMappingRoot = this.mapping.removeSubtree(this.sb.dataMappingRoot, [id]).root;
    this.states.delete(id);
    this.changedDetails.delete(id);
    this.deletedDetails.add(id);
  }

  setTransactionId(current: number, next: number): void {
    this.assertWritable();
    if (current !== this.sb.transactionId) {
      throw new ThinError('E_TRANSACTION_MISMATCH', `set_transaction_id: the pool's transaction id is ${this.sb.transactionId}, not ${current}`, { expected: current, actual: this.sb.transactionId });
    }
    if (!Number.isSafeInteger(next) || next < 0) throw new ThinError('E_INVALID', `transaction id ${next} must be a whole number >= 0`);
    this.sb.transactionId = next;
  }

  /**
   * Install a device whose mapping subtree was built in bulk (restore). The root
   * and the data blocks it maps already carry their references.
   */
  adoptDevice(id: number, root: number, details: DeviceDetails): void {
    this.assertWritable();
    checkDeviceId(id);
    if (this.states.has(id)) throw deviceExists(id);
    this.sb.dataMappingRoot = this.mapping.insertSubtree(this.sb.dataMappingRoot, [id], root);
    this.setDetails(id, details, root);
  }

  /** Set the pool time (restore); mappings made from now on carry it. */
  setTime(time: number): void {
    this.assertWritable();
    if (!Number.isInteger(time) || time < 0 || time > MAX_TIME) {
      throw new ThinError('E_RANGE', `pool time ${time} is outside 0..${MAX_TIME} (24 bits)`, { value: time });
    }
    this.sb.time = time;
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
    if (this.requireDataSm().dec(block) === 0 && this.onDataBlockFreed) this.onDataBlockFreed(block);
  }

  /**
   * Map `vblock` of `id` to `block` at the current pool time. Replaces (and drops
   * the reference of) any previous mapping.
   */
  insertMapping(id: number, vblock: number, block: number): void {
    this.assertWritable();
    const st = this.state(id);
    if (!(block >= 0 && block < this.nrDataBlocks)) {
      throw new ThinError('E_RANGE', `data block ${block} is beyond the data device (${this.nrDataBlocks} blocks)`, { device: id, block });
    }
    const oldRoot = this.prepareTopLevel(id, st);
    // One reused value object: insert packs it at once and keeps no reference to it.
    const bt = this.scratch;
    bt.block = block;
    bt.time = this.sb.time;
    const root = this.mappingTree.insert(oldRoot, vblock, bt);
    if (root !== oldRoot) this.relinkRoot(id, st, root);
    // Details live in memory until commit; update in place (no object per mapping).
    if (this.mappingTree.lastInsertAdded) this.countMapped(id, st, 1);
  }

  /** Unmap `vblock` of `id`; returns the old mapping, or undefined if none. */
  removeMapping(id: number, vblock: number): BlockTime | undefined {
    this.assertWritable();
    const st = this.state(id);
    if (this.mappingTree.lookup(this.rootOf(id, st), vblock) === undefined) return undefined;
    const oldRoot = this.prepareTopLevel(id, st);
    const r = this.mappingTree.remove(oldRoot, vblock);
    if (r.root !== oldRoot) this.relinkRoot(id, st, r.root);
    this.countMapped(id, st, -1);
    return r.value;
  }

  /** Unmap every block of `id` in [from, to); returns how many were mapped. */
  removeRange(id: number, from: number, to: number): number {
    this.assertWritable();
    const st = this.state(id);
    const oldRoot = this.prepareTopLevel(id, st);
    const r = this.mappingTree.removeRange(oldRoot, from, to);
    if (r.root !== oldRoot) this.relinkRoot(id, st, r.root);
    if (r.removed) this.countMapped(id, st, -r.removed);
    return r.removed;
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
    this.mapping.del(snap.dataMappingRoot);
    this.detailsTree.del(snap.deviceDetailsRoot);
    this.tm.dec(at);
  }

  // ---------------------------------------------------------------- sizes

  resizeData(nrBlocks: number): void {
    this.assertWritable();
    const sm = this.requireDataSm();
    if (nrBlocks < sm.nrBlocks) {
      throw new ThinError('E_UNSUPPORTED', `cannot shrink the data device from ${sm.nrBlocks} to ${nrBlocks} blocks; dm-thin pools only grow`, { from: sm.nrBlocks, to: nrBlocks });
    }
    sm.extend(nrBlocks);
  }

  /** Grow the metadata space map to the device's current size (the caller grew the device). */
  resizeMetadata(): void {
    this.assertWritable();
    const sm = this.requireMetadataSm();
    const n = this.bm.nrBlocks;
    if (n < sm.nrBlocks) {
      throw new ThinError('E_UNSUPPORTED', `cannot shrink the metadata device from ${sm.nrBlocks} to ${n} blocks`, { from: sm.nrBlocks, to: n });
    }
    sm.extend(n);
  }

  // ---------------------------------------------------------------- transactions

  commit(): void {
    this.assertWritable();
    for (const id of [...this.deletedDetails].sort((a, b) => a - b)) {
      if (!this.states.has(id)) this.sb.deviceDetailsRoot = this.detailsTree.remove(this.sb.deviceDetailsRoot, id).root;
    }
    for (const id of [...this.changedDetails].sort((a, b) => a - b)) {
      this.sb.deviceDetailsRoot = this.detailsTree.insert(this.sb.deviceDetailsRoot, id, this.states.get(id)!.details);
    }
    this.sb.dataSmRoot = this.requireDataSm().commit();
    this.sb.metadataSmRoot = this.requireMetadataSm().commit();
    this.tm.commit(packSuperblock(this.sb), superblockValidator);
    this.dataSm!.markCommitted();
    this.metadataSm!.markCommitted();
    this.changedDetails.clear();
    this.deletedDetails.clear();
    for (const st of this.states.values()) {
      st.changed = false;
      st.prepared = false;
    }
    this.committed = { ...this.sb };
  }

  /** Drop the open transaction and reload the committed state from disk. */
  abort(): void {
    this.tm.abort();
    this.bm.dropCache();
    this.sb = { ...this.committed };
    this.changedDetails.clear();
    this.deletedDetails.clear();
    this.loadSpaceMaps();
    this.loadDetails();
  }

  /** Does the open transaction hold changes? */
  get dirty(): boolean {
    return this.tm.dirtyCount > 0 || this.changedDetails.size > 0 || this.deletedDetails.size > 0 ||
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

  /** The state of `id`; E_NO_DEVICE if it does not exist. */
  private state(id: number): DeviceState {
    const st = this.states.get(id);
    if (st === undefined) throw noDevice(id);
    return st;
  }

  /** Root of `id`'s mapping subtree, looked up in the top level once and then cached. */
  private rootOf(id: number, st: DeviceState): number {
    if (st.root === undefined) {
      const r = this.mapping.subtree(this.sb.dataMappingRoot, [id]);
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
      this.sb.dataMappingRoot = this.mapping.shadowPath(this.sb.dataMappingRoot, [id])!.root;
      st.prepared = true;
    }
    return root;
  }

  /** Link `id`'s new subtree root; the bottom level already shadowed (and decremented) the old one. */
  private relinkRoot(id: number, st: DeviceState, root: number): void {
    this.sb.dataMappingRoot = this.mapping.relink(this.sb.dataMappingRoot, [id], root);
    st.root = root;
  }

  private countMapped(id: number, st: DeviceState, by: number): void {
    st.details.mappedBlocks += by;
    if (!st.changed) {
      st.changed = true;
      this.changedDetails.add(id);
    }
  }

  /** New details for `id` (a new device when `root` is given: its subtree root). */
  private setDetails(id: number, d: DeviceDetails, root?: number): void {
    let st = this.states.get(id);
    if (st === undefined) {
      st = { details: d, root, prepared: false, changed: false };
      this.states.set(id, st);
    } else {
      st.details = d;
      if (root !== undefined) st.root = root;
    }
    st.changed = true;
    this.changedDetails.add(id);
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
    this.states.clear();
    for (const [id, d] of this.detailsTree.entries(this.sb.deviceDetailsRoot)) this.states.set(id, { details: d, root: undefined, prepared: false, changed: false });
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

/** What ThinMetadata keeps per device between commits. */
interface DeviceState {
  /** Details as of now (written to the details tree at commit when `changed`). */
  details: DeviceDetails;
  /** Root of the device's mapping subtree, once looked up (or made). */
  root: number | undefined;
  /** The top-level path to the subtree was shadowed in this transaction. */
  prepared: boolean;
  /** The details differ from the committed ones (the device is in changedDetails). */
  changed: boolean;
}

function checkSuperblock(sb: Superblock, name: string, readOnly: boolean): void {
  if (sb.incompatFlags !== 0) {
    throw new ThinError('E_UNSUPPORTED', `metadata ${name} has unknown incompat flags 0x${sb.incompatFlags.toString(16)}; thinsim cannot read it`, { file: name });
  }
  if (sb.compatRoFlags !== 0 && !readOnly) {
    throw new ThinError('E_READ_ONLY', `metadata ${name} has unknown compat_ro flags 0x${sb.compatRoFlags.toString(16)}; open it read-only`, { file: name });
  }
  if (sb.metadataBlockSize !== 8) {
    throw new ThinError('E_CORRUPT', `superblock metadata_block_size is ${sb.metadataBlockSize} sectors; dm-thin uses 8`, { block: 0, kind: 'superblock' });
  }
}

function checkDeviceId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > MAX_DEVICE_ID) {
    throw new ThinError('E_INVALID', `thin device id ${id} is outside 0..${MAX_DEVICE_ID} (24 bits)`, { device: id });
  }
}

function noDevice(id: number): ThinError {
  return new ThinError('E_NO_DEVICE', `thin device ${id} does not exist`, { device: id });
}

function deviceExists(id: number): ThinError {
  return new ThinError('E_DEVICE_EXISTS', `thin device ${id} already exists`, { device: id });
}
