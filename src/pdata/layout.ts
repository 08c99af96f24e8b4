/**
 * On-disk struct layouts (buffer-layout) with a checked u64 field.
 *
 * Contract: `u64(name)` decodes a little-endian 64-bit field to a JS number and
 * throws E_RANGE (naming the field) when the value is beyond 2^53-1, instead of
 * silently rounding as buffer-layout's own `nu64` would; it encodes numbers
 * exactly. `view(u8)` gives a Buffer over a Uint8Array without copying.
 */
import * as BL from 'buffer-layout';
import { ThinError } from '../errors';

class CheckedU64 extends BL.Layout<number> {
  constructor(property: string) {
    super(8, property);
  }

  override decode(b: Buffer, offset = 0): number {
    const lo = b.readUInt32LE(offset);
    const hi = b.readUInt32LE(offset + 4);
    if (hi >= 0x200000) {
      throw new ThinError('E_RANGE', `on-disk field ${this.property} is ${(BigInt(hi) << 32n) | BigInt(lo)}, beyond 2^53-1`, { field: this.property });
    }
    return hi * 2 ** 32 + lo;
  }

  override encode(src: number, b: Buffer, offset = 0): number {
    if (!Number.isSafeInteger(src) || src < 0) {
      throw new ThinError('E_RANGE', `field ${this.property} must be a whole number from 0 to 2^53-1, got ${src}`, { field: this.property });
    }
    b.writeUInt32LE(src % 2 ** 32, offset);
    b.writeUInt32LE(Math.floor(src / 2 ** 32), offset + 4);
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

/** Read a u64 LE at `off` as a number, E_RANGE beyond 2^53-1 (hot-path twin of u64()). */
export function readU64(dv: DataView, off: number, what = 'u64 field'): number {
  const hi = dv.getUint32(off + 4, true);
  if (hi >= 0x200000) throw new ThinError('E_RANGE', `${what} is beyond 2^53-1`, { offset: off });
  return hi * 2 ** 32 + dv.getUint32(off, true);
}

export function writeU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v % 2 ** 32, true);
  dv.setUint32(off + 4, Math.floor(v / 2 ** 32), true);
}
