/**
 * The bulk-load handshake between ThinMetadata and the restorer: what a restore
 * starts from (the source's superblock) and exactly the writes ThinMetadata lends a
 * bulk load. Types only: metadata.ts makes a BulkLoad, restorer.ts drives one;
 * this file imports neither (no import circle).
 */
import type { BTreeBuilder } from '../pdata/btree/builder';
import type { BlockTime } from './format/block-time';
import type { DeviceDetails } from './format/device-details';

/** The header a restore starts from (the source's superblock). */
export interface RestoreHeader {
  /** Data block size in 512-byte sectors. */
  dataBlockSize: number;
  nrDataBlocks: number;
  time: number;
  transactionId: number;
}

/** The writes a bulk load needs of a formatted, uncommitted ThinMetadata. */
export interface BulkLoad {
  /** A builder for one device's mapping subtree. */
  builder(): BTreeBuilder<BlockTime>;
  /** One more reference to data block `block`. */
  incData(block: number): void;
  /** Install a device whose subtree root and data references are already counted. */
  adopt(id: number, root: number, details: DeviceDetails): void;
  /** Metadata blocks made in this transaction and not yet written. */
  heldBlocks(): number;
  /**
   * Write the blocks made so far to their places (free space: never a block the
   * device's superblock references, which is not written until the commit), so
   * memory stays bounded; they are read back from the device when needed.
   */
  spill(): void;
  /**
   * Also write the blocks out whenever more than `blocks` are held inside the
   * commit's space-map updates (undefined: never, the default for any metadata).
   */
  spillInCommit(blocks: number | undefined): void;
}
