/**
 * Space-map bitmap block (spec §6.3): 16-byte header (csum, not_used, blocknr)
 * then 4080 bytes = 16320 two-bit reference counts, in the bit order of §6.1.
 * The payload bytes are exactly the in-memory RefCounts encoding, so a bitmap is
 * written by copying a 4080-byte slice.
 */
import { saltedValidator } from '../block-manager';

export const BITMAP_SALT = 240779;
export const BITMAP_HEADER = 16;
export const BITMAP_PAYLOAD = 4080;
export const ENTRIES_PER_BITMAP = BITMAP_PAYLOAD * 4; // 16320

export const bitmapValidator = saltedValidator('space map bitmap', BITMAP_SALT);

export function nrBitmaps(nrBlocks: number): number {
  return Math.ceil(nrBlocks / ENTRIES_PER_BITMAP);
}
