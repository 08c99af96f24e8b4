/**
 * The metadata bit-flip sweep, shared by the in-process worker and the CLI test:
 * which blocks of a metadata image carry a valid dm-thin checksum (and with which salt),
 * how to flip one bit (optionally re-sealing the checksum, so the parsers behind the
 * validators see the damage), and the seeded list of flips to try.
 */
import { hot } from '../../src/hot';
import { Rand } from '../../support/random';

export const BLOCK = 4096;
/** dm-thin's checksum salts: superblock, B-tree node, space-map index, space-map bitmap. */
export const SALTS = [160774, 121107, 160478, 240779];

export interface Sealed { block: number; salt: number }
export interface Flip { block: number; bit: number; reseal: boolean }

/** Blocks whose stored checksum matches one of dm-thin's salts. */
export function sealedBlocks(image: Uint8Array): Sealed[] {
  const out: Sealed[] = [];
  const view = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  for (let b = 0; b * BLOCK < image.length; b++) {
    const blk = image.subarray(b * BLOCK, (b + 1) * BLOCK);
    if (blk.every((x) => x === 0)) continue;
    const stored = view.readUInt32LE(b * BLOCK);
    const salt = SALTS.find((s) => hot.blockChecksum(blk, s) === stored);
    if (salt !== undefined) out.push({ block: b, salt });
  }
  return out;
}

/** Flip one bit of `image` in place; with `reseal`, recompute the block's checksum. */
export function applyFlip(image: Uint8Array, f: Flip, salt: number): void {
  const byte = f.block * BLOCK + (f.bit >> 3);
  image[byte] ^= 1 << (f.bit & 7);
  if (f.reseal) {
    const blk = image.subarray(f.block * BLOCK, (f.block + 1) * BLOCK);
    Buffer.from(blk.buffer, blk.byteOffset, BLOCK).writeUInt32LE(hot.blockChecksum(blk, salt), 0);
  }
}

/** Index past the last non-zero byte of a block, rounded up to 8 bytes (the part worth flipping). */
export function usedBytes(image: Uint8Array, block: number): number {
  const blk = image.subarray(block * BLOCK, (block + 1) * BLOCK);
  let end = BLOCK;
  while (end > 0 && blk[end - 1] === 0) end--;
  return Math.min(BLOCK, (end + 7) & ~7);
}

/**
 * Flips for a sweep: for every sealed block, bits of its first `headerBytes` bytes after
 * the checksum (node and superblock headers) re-sealed, all of them (`headerSample`
 * undefined; then the superblock's first 512 bytes) or that many picked at random; plus `perBlock` random bits of its used bytes
 * re-sealed and `perBlock` / 2 anywhere in the block left unsealed (the checksum must
 * catch those).
 */
export function flips(image: Uint8Array, sealed: Sealed[], seed: number, perBlock: number, headerSample?: number, headerBytes = 32): Flip[] {
  const r = new Rand(seed);
  const out: Flip[] = [];
  for (const { block, salt } of sealed) {
    // The superblock's fields run to byte 512 (space map roots, block sizes, sizes); a full
    // sweep flips all of them.
    const bytes = headerSample === undefined && salt === SALTS[0] ? 512 : headerBytes;
    const header = Array.from({ length: bytes * 8 - 32 }, (_, i) => 32 + i);
    const picked = headerSample === undefined ? header : r.shuffle(header).slice(0, headerSample);
    for (const bit of picked) out.push({ block, bit, reseal: true });
    const used = Math.max(usedBytes(image, block), headerBytes);
    for (let i = 0; i < perBlock; i++) out.push({ block, bit: r.int(used * 8), reseal: true });
    for (let i = 0; i < perBlock / 2; i++) out.push({ block, bit: r.int(BLOCK * 8), reseal: false });
  }
  return out;
}

/**
 * Known bugs in code this suite does not own, each with a `{ todo }` regression test in
 * metadata-regressions.test.ts: the sweep skips the named operation on flips inside the
 * byte range (of the superblock, block 0) so it can go on looking for new ones.
 */
export const KNOWN: Array<{ op: string; block: number; from: number; to: number; why: string }> = [];

export function knownBug(op: string, f: Flip): string | undefined {
  const byte = f.bit >> 3;
  return KNOWN.find((k) => k.op === op && k.block === f.block && f.reseal && byte >= k.from && byte < k.to)?.why;
}
