/**
 * On-disk integers: the one little-endian u32/u64 codec every pdata and thin
 * structure uses, and buffer-layout structs built on it.
 *
 * Contract:
 * - A u64 becomes a JavaScript number only when it is exact. Reading one beyond
 *   Number.MAX_SAFE_INTEGER throws E_CORRUPT naming the field (`what`): thinsim
 *   never writes such a value, so the bytes are damaged or not dm-thin metadata.
 *   Writing anything but a whole number from 0 to 2^53-1 throws E_RANGE naming
 *   the field, before a byte is touched.
 * - `getU64`/`setU64` work on raw bytes (the B-tree node and block paths);
 *   `readU64`/`writeU64` on a DataView (value types); `u64(name)` is the same
 *   field as a buffer-layout member (superblock, space-map root). All share the
 *   checks below, so they cannot drift apart.
 * - Cost: no allocation; a store below 2^32 skips the division.
 */
import * as BL from 'buffer-layout';
import { ThinError } from '../errors';

const TWO32 = 2 ** 32;
/** Largest high word of a u64 that still gives a safe integer. */
const MAX_SAFE_HI = 0x1fffff;

/** Little-endian u32 straight from the bytes: cheaper than a DataView per block. */
export function getU32(d: Uint8Array, o: number): number {
  return (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0;
}

export function setU32(d: Uint8Array, o: number, v: number): void {
  d[o] = v & 0xff;
  d[o + 1] = (v >>> 8) & 0xff;
  d[o + 2] = (v >>> 16) & 0xff;
  d[o + 3] = (v >>> 24) & 0xff;
}

/** u64 LE at `o` as a number; E_CORRUPT naming `what` beyond 2^53-1. */
export function getU64(d: Uint8Array, o: number, what: string): number {
  const hi = getU32(d, o + 4);
  const lo = getU32(d, o);
  if (hi > MAX_SAFE_HI) throw u64TooBig(what, hi, lo);
  return hi * TWO32 + lo;
}

/**
 * u64 LE at `o` as a double without the 2^53 check: exact for every safe value,
 * and a larger one still compares as larger. For comparisons only (searches).
 */
export function getU64Unchecked(d: Uint8Array, o: number): number {
  return getU32(d, o + 4) * TWO32 + getU32(d, o);
}

/** Store `v` as a u64 LE at `o`; E_RANGE naming `what` unless it is a whole number in 0..2^53-1. */
export function setU64(d: Uint8Array, o: number, v: number, what: string): void {
  if (v >>> 0 === v) {
    setU32(d, o, v);
    setU32(d, o + 4, 0);
    return;
  }
  checkU64(v, what);
  setU32(d, o, v % TWO32);
  setU32(d, o + 4, Math.floor(v / TWO32));
}

/** `getU64` over a DataView. */
export function readU64(dv: DataView, o: number, what: string): number {
  const hi = dv.getUint32(o + 4, true);
  const lo = dv.getUint32(o, true);
  if (hi > MAX_SAFE_HI) throw u64TooBig(what, hi, lo);
  return hi * TWO32 + lo;
}

/** `setU64` over a DataView. */
export function writeU64(dv: DataView, o: number, v: number, what: string): void {
  if (v >>> 0 === v) {
    dv.setUint32(o, v, true);
    dv.setUint32(o + 4, 0, true);
    return;
  }
  checkU64(v, what);
  dv.setUint32(o, v % TWO32, true);
  dv.setUint32(o + 4, Math.floor(v / TWO32), true);
}

/** Throw E_RANGE naming `what` unless `v` fits a u64 exactly as a number. */
export function checkU64(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new ThinError('E_RANGE', `${what} must be a whole number from 0 to 2^53-1, got ${v}`, { field: what, value: v });
  }
}

function u64TooBig(what: string, hi: number, lo: number): ThinError {
  const big = (BigInt(hi) << 32n) | BigInt(lo);
  return new ThinError('E_CORRUPT', `${what} is ${big}, beyond 2^53-1: thinsim never writes such a value, so the metadata is damaged`, { field: what, value: big.toString() });
}

class CheckedU64 extends BL.Layout<number> {
  constructor(property: string) {
    super(8, property);
  }

  override decode(b: Buffer, offset = 0): number {
    return getU64(b, offset, `on-disk field ${this.property}`);
  }

  override encode(src: number, b: Buffer, offset = 0): number {
    setU64(b, offset, src, `field ${this.property}`);
    return 8;
  }
}

export const u64 = (property: string): BL.Layout<number> => new CheckedU64(property);
export const u32 = BL.u32;
export const blob = BL.blob;
export const struct = BL.struct;
export type Layout<T> = BL.Layout<T>;

export function view(u8: Uint8Array, offset = 0, length = u8.length - offset): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset + offset, length);
}
