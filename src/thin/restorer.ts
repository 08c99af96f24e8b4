/**
 * Bulk load of a whole pool (restore): `startRestore` formats the device without
 * writing the superblock (ThinMetadata.bulkLoad); devices then come one at a time,
 * each mapping subtree built bottom-up in O(mappings) (pdata's BTreeBuilder), and
 * `finish()` commits once.
 *
 * Contract: mappings of a device come in strictly increasing virtual block order;
 * each one takes a reference to its data block (a block mapped by two devices has
 * count 2: no metadata nodes are shared between restored devices). A device's
 * mapped_blocks is the number of mappings given, whatever the source said.
 * Nothing reaches the superblock before `finish()`. Memory is bounded, as
 * thin_restore's: once more than `roundBlocks` metadata blocks are held, they are
 * written to their places on the device (free space, unsynced) in one round and
 * dropped; so a load that fails part way leaves the superblock as it was but may
 * have written free blocks (restore.ts undoes that for an existing device). Beyond
 * that: one leaf's worth of entries per tree level, and the space maps' counts.
 */
import { ThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import type { BTreeBuilder } from '../pdata/btree/builder';
import type { BulkLoad, RestoreHeader } from './bulk-load';
import type { BlockTime } from './format/block-time';
import type { DeviceDetails } from './format/device-details';
import { OpenOptions, ThinMetadata } from './metadata';

export type { RestoreHeader };

/**
 * Metadata blocks a restore holds before writing them out (1 MiB). Small on purpose:
 * the written blocks' buffers are kept for the next round's blocks (1 MiB, not 8 at
 * 2,048), and a held block's bookkeeping (the transaction manager's dirty entry) dies
 * young instead of being promoted, which made V8 double its young generation between
 * 4M and 16M mappings (docs/offline-tools.md, "Restoring"). Rounds this size cost no
 * measurable time.
 */
export const ROUND_BLOCKS = 256;

export interface RestoreOptions extends OpenOptions {
  /** Blocks held before a round is written (default ROUND_BLOCKS). */
  roundBlocks?: number;
}

/** Start a bulk load of a whole pool into `device` (see the contract). */
export function startRestore(device: BlockDevice, header: RestoreHeader, opts: RestoreOptions = {}): MetadataRestorer {
  const { md, parts } = ThinMetadata.bulkLoad(device, header, { cacheBlocks: 1024, ...opts });
  return new MetadataRestorer(md, parts, opts.roundBlocks ?? ROUND_BLOCKS);
}

export class MetadataRestorer {
  private builder: BTreeBuilder<BlockTime> | undefined;
  private current: { id: number; details: Omit<DeviceDetails, 'mappedBlocks'> } | undefined;
  /** Mappings since the held blocks were last counted (counting per mapping costs). */
  private sinceRound = 0;
  private readonly value: BlockTime = { block: 0, time: 0 };

  constructor(private readonly md: ThinMetadata, private readonly parts: BulkLoad, private readonly roundBlocks: number) {
    parts.spillInCommit(roundBlocks);
  }

  get nrDataBlocks(): number {
    return this.md.nrDataBlocks;
  }

  hasDevice(id: number): boolean {
    return this.md.hasDevice(id);
  }

  /** Start device `id`; its mappings follow, then `endDevice()`. */
  beginDevice(id: number, details: Omit<DeviceDetails, 'mappedBlocks'>): void {
    if (this.current) throw new ThinError('E_INVALID', `device ${id} begins inside device ${this.current.id}`, { device: id });
    if (this.md.hasDevice(id)) throw new ThinError('E_DEVICE_EXISTS', `thin device ${id} already exists`, { device: id });
    this.current = { id, details };
    this.builder = this.parts.builder();
  }

  /** Map `length` virtual blocks from `origin` to data blocks from `data`, all at `time`. */
  mapRun(origin: number, data: number, length: number, time: number): void {
    const b = this.builder;
    if (!b) throw new ThinError('E_INVALID', 'a mapping outside a device');
    if (!(data >= 0 && data + length <= this.md.nrDataBlocks)) {
      throw new ThinError('E_RANGE', `mapping to data blocks ${data}..${data + length - 1} is beyond the data device (${this.md.nrDataBlocks} blocks)`, { device: this.current!.id });
    }
    // One value object for every push: the builder encodes a value as it is pushed, and
    // an object per mapping was most of what a restore allocated (young-generation work).
    const v = this.value;
    v.time = time;
    for (let i = 0; i < length; i++) {
      v.block = data + i;
      b.push(origin + i, v);
      this.parts.incData(data + i);
    }
    // A leaf holds ~250 mappings: checking every 4096 mappings overshoots by about 16 blocks.
    this.sinceRound += length;
    if (this.sinceRound >= 4096) {
      this.sinceRound = 0;
      if (this.parts.heldBlocks() >= this.roundBlocks) this.parts.spill();
    }
  }

  /** Finish the device begun last; returns its mapped block count. */
  endDevice(): number {
    const cur = this.current;
    const b = this.builder;
    if (!cur || !b) throw new ThinError('E_INVALID', 'endDevice without a device');
    this.parts.adopt(cur.id, b.finish(), { ...cur.details, mappedBlocks: b.size });
    this.current = undefined;
    this.builder = undefined;
    return b.size;
  }

  /** Commit everything (the superblock last) and hand over the metadata. */
  finish(): ThinMetadata {
    if (this.current) throw new ThinError('E_INVALID', `device ${this.current.id} was not ended`, { device: this.current.id });
    this.md.commit();
    // The metadata goes on as any other: its later commits hold what they change.
    this.parts.spillInCommit(undefined);
    return this.md;
  }
}
