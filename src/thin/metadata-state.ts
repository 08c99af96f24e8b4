/**
 * What the parts of one ThinMetadata share, and its transaction: the block and
 * transaction managers, the superblock on disk and the open transaction's working
 * copy, both space maps, the device table and the details tree; and the code that
 * loads them from disk, formats them, commits, aborts and grows them.
 *
 * Contract:
 * - Private to the thin layer's ThinMetadata (metadata.ts) and its metadata
 *   snapshots (metadata-snap.ts); nothing else holds one.
 * - `committed` is the superblock as of the last commit (or open): what is on disk.
 *   `sb` is the open transaction's copy (roots, time, transaction id, held root).
 * - `commit()` folds the transaction into blocks (the details that changed, the data
 *   space map, then the metadata space map) and writes the superblock last: a crash
 *   before that write leaves the previous commit intact. Blocks freed in the
 *   transaction become allocatable once the superblock is durable. `abort()` drops
 *   the transaction and reloads the committed state.
 * - A metadata-snapshot view (`load` with `metadataSnap`) has no space maps: what
 *   needs one throws E_READ_ONLY, as does any change to a read-only open.
 * - `load` rejects an unformatted (all-zero) or foreign device with E_CORRUPT and one
 *   smaller than a block with E_TOO_SMALL; `format` one below MIN_METADATA_BLOCKS
 *   with E_TOO_SMALL; nothing is written by either.
 */
import { ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import { BlockManager } from '../pdata/block-manager';
import { BTree } from '../pdata/btree/btree';
import { DataSpaceMap } from '../pdata/space-map/data-space-map';
import { MetadataSpaceMap } from '../pdata/space-map/metadata-space-map';
import { TransactionManager } from '../pdata/transaction-manager';
import { checkDataBlockSize, checkedInt, METADATA_BLOCK_SIZE } from '../units';
import { DeviceTable } from './device-table';
import { DeviceDetails, deviceDetailsValue } from './format/device-details';
import {
  checkOpenable, isUnformatted, newSuperblock, packSuperblock, snapshotSuperblockValidator, Superblock,
  superblockValidator, SUPERBLOCK_FLAG_NEEDS_CHECK, unpackSuperblock,
} from './format/superblock';

/** Smallest metadata device thinsim formats (superblock, sm blocks, tree roots, room to work). */
export const MIN_METADATA_BLOCKS = 16;

/** Both devices' sizes and use, in blocks (data blocks and 4 KiB metadata blocks). */
export interface SpaceUsage {
  dataBlocks: number; dataUsed: number; dataFree: number;
  metadataBlocks: number; metadataUsed: number; metadataFree: number;
}

export class MetadataState {
  readonly bm: BlockManager;
  readonly tm: TransactionManager;
  readonly readOnly: boolean;
  /** Superblock as of the last commit (or open). */
  committed!: Superblock;
  /** Working copy: roots, time, transaction id of the open transaction. */
  sb!: Superblock;
  metadataSm: MetadataSpaceMap | undefined;
  dataSm: DataSpaceMap | undefined;
  readonly devices = new DeviceTable();
  readonly detailsTree: BTree<DeviceDetails>;

  constructor(device: BlockDevice, cacheBlocks: number | undefined, readOnly: boolean) {
    this.bm = new BlockManager(device, { cacheBlocks });
    this.tm = new TransactionManager(this.bm);
    this.readOnly = device.readOnly || readOnly;
    this.detailsTree = new BTree(this.tm, deviceDetailsValue);
  }

  // ---------------------------------------------------------------- open and format

  /**
   * Read the superblock, space maps and device details of a formatted device; with
   * `metadataSnap`, the trees of the held metadata snapshot (or of the snapshot
   * superblock at that block) instead of the live ones, and no space maps.
   */
  load(metadataSnap: boolean | number | undefined): void {
    const device = this.bm.device;
    if (device.size() < METADATA_BLOCK_SIZE) {
      throw new ThinError('E_TOO_SMALL', `metadata device ${device.name} is ${device.size()} bytes, smaller than one 4 KiB block: is this binary metadata?`, { file: device.name });
    }
    const raw = this.bm.readRaw(0);
    if (isUnformatted(raw)) {
      throw new ThinError('E_CORRUPT', `metadata device ${device.name} is unformatted (block 0 is all zeros)`, { block: 0, kind: 'superblock', file: device.name });
    }
    const live = unpackSuperblock(this.bm.read(0, superblockValidator));
    checkOpenable(live, device.name, this.readOnly);
    this.committed = live;
    if (metadataSnap) {
      const at = typeof metadataSnap === 'number' ? metadataSnap : live.heldRoot;
      if (!at) throw new ThinError('E_NO_METADATA_SNAP', `metadata on ${device.name} holds no metadata snapshot (held_root is 0)`, { file: device.name });
      const snap = unpackSuperblock(this.bm.read(at, snapshotSuperblockValidator));
      this.sb = { ...snap };
      this.loadDetails();
      return;
    }
    this.sb = { ...live };
    this.loadSpaceMaps();
    this.loadDetails();
  }

  /**
   * A new, empty pool in memory: space maps and superblock; nothing is written until
   * the first commit. `emptyMappings` makes the mapping tree's empty top level (it
   * runs once the space maps exist).
   */
  format(dataBlockSize: number, nrDataBlocks: number, emptyMappings: () => number): void {
    checkDataBlockSize(dataBlockSize);
    const device = this.bm.device;
    const nrBlocks = Math.floor(device.size() / METADATA_BLOCK_SIZE);
    if (nrBlocks < MIN_METADATA_BLOCKS) {
      throw new ThinError('E_TOO_SMALL', `metadata device ${device.name} has ${nrBlocks} blocks of 4 KiB; thinsim needs at least ${MIN_METADATA_BLOCKS} (64 KiB)`, { file: device.name });
    }
    this.metadataSm = MetadataSpaceMap.format(this.tm, nrBlocks);
    this.dataSm = DataSpaceMap.format(this.tm, nrDataBlocks);
    const sb = newSuperblock(dataBlockSize, this.metadataSm.nrBlocks, emptyMappings(), this.detailsTree.empty());
    this.sb = sb;
    this.committed = { ...sb };
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
    this.devices.load(this.detailsTree.entries(this.sb.deviceDetailsRoot));
  }

  // ---------------------------------------------------------------- space

  get nrDataBlocks(): number { return this.dataSm ? this.dataSm.nrBlocks : this.sb.dataSmRoot?.nrBlocks ?? 0; }

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

  // ---------------------------------------------------------------- the transaction

  commit(): void {
    this.tm.commit(this.sealTransaction(), superblockValidator);
    this.transactionCommitted();
  }

  /** `commit()` off the event loop; ThinMetadata.commitAsync says what the caller must keep. */
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
    return this.tm.dirtyCount > 0 || this.devices.dirty ||
      this.sb.transactionId !== this.committed.transactionId || this.sb.heldRoot !== this.committed.heldRoot;
  }

  /** Set needs_check in the committed superblock, in place; the open transaction is dropped first. */
  setNeedsCheck(): void {
    this.tm.abort();
    const sb = { ...this.committed, flags: this.committed.flags | SUPERBLOCK_FLAG_NEEDS_CHECK };
    this.bm.write(0, packSuperblock(sb), superblockValidator);
    this.bm.sync();
    this.committed = sb;
    this.sb = { ...sb };
  }

  /** Fold the transaction into metadata blocks: details, data then metadata space map; returns the packed superblock. */
  private sealTransaction(): Uint8Array {
    this.assertWritable();
    this.sb.deviceDetailsRoot = this.devices.flush(this.detailsTree, this.sb.deviceDetailsRoot);
    this.sb.dataSmRoot = this.requireDataSm().commit();
    this.sb.metadataSmRoot = this.requireMetadataSm().commit();
    return packSuperblock(this.sb);
  }

  /** The superblock is durable: blocks freed in the transaction become allocatable. */
  private transactionCommitted(): void {
    this.dataSm!.markCommitted();
    this.metadataSm!.markCommitted();
    this.devices.committed();
    this.committed = { ...this.sb };
  }

  // ---------------------------------------------------------------- guards

  requireDataSm(): DataSpaceMap {
    if (!this.dataSm) throw new ThinError('E_READ_ONLY', 'metadata snapshot views have no data space map');
    return this.dataSm;
  }

  requireMetadataSm(): MetadataSpaceMap {
    if (!this.metadataSm) throw new ThinError('E_READ_ONLY', 'metadata snapshot views have no metadata space map');
    return this.metadataSm;
  }

  assertWritable(): void {
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `metadata ${this.bm.device.name} is open read-only`, { file: this.bm.device.name });
  }
}
