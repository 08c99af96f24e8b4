/**
 * block_time (spec §5.1): the 8-byte value of a bottom-level mapping,
 * (data_block << 24) | time, with a 40-bit data block and a 24-bit time.
 */
import { ThinError } from '../../errors';

/** Bytes of one block_time value in a mapping leaf. */
export const BLOCK_TIME_SIZE = 8;
export const MAX_TIME = 0xffffff;
export const MAX_DATA_BLOCK = 2 ** 40 - 1;

export interface BlockTime {
  block: number;
  time: number;
}

export function readBlockTime(dv: DataView, off: number): BlockTime {
  const lo = dv.getUint32(off, true);
  const hi = dv.getUint32(off + 4, true);
  return { block: hi * 256 + (lo >>> 24), time: lo & 0xffffff };
}

/** readBlockTime straight from bytes (the lookup hot path). */
export function readBlockTimeFrom(d: Uint8Array, o: number): BlockTime {
  return { block: blockTimeBlock(d, o), time: blockTimeTime(d, o) };
}

/** The data block of the block_time at byte `o` of a node, without an object. */
export function blockTimeBlock(d: Uint8Array, o: number): number {
  return ((d[o + 4] | (d[o + 5] << 8) | (d[o + 6] << 16) | (d[o + 7] << 24)) >>> 0) * 256 + d[o + 3];
}

/** The time of the block_time at byte `o` of a node, without an object. */
export function blockTimeTime(d: Uint8Array, o: number): number {
  return d[o] | (d[o + 1] << 8) | (d[o + 2] << 16);
}

export function writeBlockTime(dv: DataView, off: number, v: BlockTime): void {
  if (!(v.block >= 0 && v.block <= MAX_DATA_BLOCK) || !Number.isInteger(v.block)) {
    throw new ThinError('E_RANGE', `data block ${v.block} does not fit in a 40-bit mapping`, { value: v.block });
  }
  if (!(v.time >= 0 && v.time <= MAX_TIME) || !Number.isInteger(v.time)) {
    throw new ThinError('E_RANGE', `time ${v.time} does not fit in a 24-bit mapping`, { value: v.time });
  }
  dv.setUint32(off, ((v.block & 0xff) << 24 | v.time) >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v.block / 256), true);
}
