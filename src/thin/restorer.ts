/**
 * Bulk load of a whole pool (restore): made by `ThinMetadata.restore`, which
 * formats the device without writing anything; devices then come one at a time,
 * each mapping subtree built bottom-up in O(mappings) (pdata's BTreeBuilder), and
 * `finish()` commits once.
 *
 * Contract: mappings of a device come in strictly increasing virtual block order;
 * each one takes a reference to its data block (a block mapped by two devices has
 * count 2: no metadata nodes are shared between restored devices). A device's
 * mapped_blocks is the number of mappings given, whatever the source said. Nothing
 * reaches the device before `finish()`: a load that fails part way leaves it as it
 * was. Memory: one leaf's worth of entries per tree level.
 */
import { ThinError } from '../errors';
import type { BTreeBuilder } from '../pdata/btree/builder';
import type { BlockTime } from './format/block-time';
import type { DeviceDetails } from './format/device-details';
import type { ThinMetadata } from './metadata';

/** The header a restore starts from (the source's superblock). */
export interface RestoreHeader {
  /** Data block size in 512-byte sectors. */
  dataBlockSize: number;
  nrDataBlocks: number;
  time: number;
  transactionId: number;
}

/** What ThinMetadata lends a restorer: exactly the writes a bulk load needs. */
export interface RestoreParts {
  /** A builder for one device's mapping subtree. */
  builder(): BTreeBuilder<BlockTime>;
  /** One more reference to data block `block`. */
  incData(block: number): void;
  /** Install a device whose subtree root and data references are already counted. */
  adopt(id: number, root: number, details: DeviceDetails): void;
}

export class MetadataRestorer {
  private builder: BTreeBuilder<BlockTime> | undefined;
  private current: { id: number; details: Omit<DeviceDetails, 'mappedBlocks'> } | undefined;

  constructor(private readonly md: ThinMetadata, private readonly parts: RestoreParts) {}

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
    for (let i = 0; i < length; i++) {
      b.push(origin + i, { block: data + i, time });
      this.parts.incData(data + i);
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

  /** Commit everything (the only write) and hand over the metadata. */
  finish(): ThinMetadata {
    if (this.current) throw new ThinError('E_INVALID', `device ${this.current.id} was not ended`, { device: this.current.id });
    this.md.commit();
    return this.md;
  }
}
