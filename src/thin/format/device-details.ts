/**
 * Device details (spec §5.2): the 24-byte value of the details tree, keyed by thin
 * device id. mapped_blocks u64, transaction_id u64, creation_time u32,
 * snapshotted_time u32.
 */
import type { ValueType } from '../../pdata/btree/value-type';
import { readU64, writeU64 } from '../../pdata/layout';

export const DEVICE_DETAILS_SIZE = 24;

export interface DeviceDetails {
  mappedBlocks: number;
  transactionId: number;
  creationTime: number;
  snapshottedTime: number;
}

export const deviceDetailsValue: ValueType<DeviceDetails> = {
  size: DEVICE_DETAILS_SIZE,
  read(dv, off) {
    return {
      mappedBlocks: readU64(dv, off, 'mapped_blocks'),
      transactionId: readU64(dv, off + 8, 'transaction_id'),
      creationTime: dv.getUint32(off + 16, true),
      snapshottedTime: dv.getUint32(off + 20, true),
    };
  },
  write(dv, off, d) {
    writeU64(dv, off, d.mappedBlocks, 'mapped_blocks');
    writeU64(dv, off + 8, d.transactionId, 'transaction_id');
    dv.setUint32(off + 16, d.creationTime, true);
    dv.setUint32(off + 20, d.snapshottedTime, true);
  },
  equal: (a, b) => a.mappedBlocks === b.mappedBlocks && a.transactionId === b.transactionId && a.creationTime === b.creationTime && a.snapshottedTime === b.snapshottedTime,
};
