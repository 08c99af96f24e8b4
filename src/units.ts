/**
 * Units: sizes as users write them (64K, 10G, 512s), 512-byte sectors, 4 KiB metadata
 * blocks and data blocks, with checked conversions.
 *
 * Contract: byte counts are JavaScript numbers and must stay exact integers, so a
 * parsed size that is not a safe integer (< 2^53) is E_RANGE, and one that is not a
 * size at all (negative, fractional bytes, an unknown unit) is E_INVALID naming the input. Suffixes are binary (K = 1024), as in
 * LVM and dmsetup; a bare number is bytes. 64-bit on-disk fields are pdata's
 * (one checked u64 codec there).
 */
import { ThinError } from './errors';

export const SECTOR_SIZE = 512;
export const METADATA_BLOCK_SIZE = 4096;
/** dm-thin data block size limits, in sectors (64 KiB .. 1 GiB, multiple of 64 KiB). */
export const DATA_BLOCK_SIZE_MIN_SECTORS = 128;
export const DATA_BLOCK_SIZE_MAX_SECTORS = 2097152;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const SUFFIX: Record<string, number> = {
  '': 1, b: 1, s: SECTOR_SIZE,
  k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, pib: 2 ** 50,
  kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30, tb: 2 ** 40, pb: 2 ** 50,
};

/** Throw E_RANGE unless n is a non-negative safe integer. Returns n. */
export function checkedInt(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new ThinError('E_RANGE', `${what} must be a whole number from 0 to 2^53-1, got ${n}`, { value: n });
  }
  return n;
}

/**
 * Parse a size such as "64K", "10G", "1.5M", "2048s" (sectors), "4096" (bytes).
 * Throws E_INVALID naming the input when it is not a size.
 */
export function parseSize(input: string | number, what = 'size'): number {
  if (typeof input === 'number') return checkedInt(input, what);
  if (/^\s*-\s*\d/.test(input)) {
    throw new ThinError('E_INVALID', `${what} "${input}" is negative: sizes count up from 0, e.g. 4096, 64K, 10G`, { value: input });
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = m ? SUFFIX[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new ThinError('E_INVALID', `${what} "${input}" is not a size: use a number with an optional unit, e.g. 4096, 64K, 10G, 2048s`, { value: input });
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isInteger(bytes)) {
    throw new ThinError('E_INVALID', `${what} "${input}" is not a whole number of bytes`, { value: input });
  }
  if (bytes > MAX_SAFE) {
    throw new ThinError('E_RANGE', `${what} "${input}" is too large: at most 2^53-1 bytes (just under 8P)`, { value: input });
  }
  return checkedInt(bytes, what);
}

/** Validate a data block size in sectors against the kernel's rule (128..2097152, multiple of 128). */
export function checkDataBlockSize(sectors: number): number {
  if (!Number.isInteger(sectors) || sectors < DATA_BLOCK_SIZE_MIN_SECTORS || sectors > DATA_BLOCK_SIZE_MAX_SECTORS || sectors % DATA_BLOCK_SIZE_MIN_SECTORS !== 0) {
    throw new ThinError('E_INVALID', `data block size must be a multiple of 64 KiB from 64 KiB to 1 GiB (128..2097152 sectors), got ${sectors} sectors`, { value: sectors });
  }
  return sectors;
}

/** Parse a user data block size ("64K", "1M", or sectors with "s") to sectors, validated. */
export function parseBlockSize(input: string | number): number {
  const bytes = parseSize(input, 'block size');
  if (bytes % SECTOR_SIZE !== 0) {
    throw new ThinError('E_INVALID', `block size ${input} is not a multiple of 512 bytes; use e.g. 64K, 128K, 1M`, { value: input });
  }
  return checkDataBlockSize(bytes / SECTOR_SIZE);
}
