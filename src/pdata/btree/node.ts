/**
 * B-tree node: the 4096-byte block layout shared by every dm-thin tree (spec section 4).
 *
 *   0  u32 csum (salt 121107)   4 u32 flags (INTERNAL=1 | LEAF=2)   8 u64 blocknr
 *  16  u32 nr_entries          20 u32 max_entries                  24 u32 value_size
 *  28  u32 padding             32 u64 keys[max_entries]
 *  32 + 8 * max_entries        values[max_entries], value_size bytes each
 *
 * Everything here works on the raw bytes of a block (a Uint8Array of BLOCK_SIZE) and
 * allocates nothing on the read paths, so the tree code can binary-search a cached
 * block directly. Keys are u64 on disk and JavaScript numbers here (layout.ts's
 * codec): reading a key beyond 2^53-1 throws E_CORRUPT instead of rounding it.
 */
import { ThinError } from '../../errors';
import { BLOCK_SIZE, saltedValidator, Validator } from '../block-manager';
import { getU32, getU64, getU64Unchecked, setU32, setU64 } from '../layout';

export const BTREE_NODE_SALT = 121107;
export const INTERNAL_NODE = 1;
export const LEAF_NODE = 2;
/** Deepest node a reader follows (root = depth 0); anything deeper is a cycle or corruption. */
export const MAX_BTREE_DEPTH = 16;
/** Internal nodes always hold u64 child block numbers. */
export const INTERNAL_VALUE_SIZE = 8;

// Node header offsets (spec 4.1). The checksum (0) and blocknr (8) belong to the validator.
export const NODE_FLAGS = 4;
export const NODE_NR_ENTRIES = 16;
export const NODE_MAX_ENTRIES = 20;
export const NODE_VALUE_SIZE = 24;
export const NODE_HEADER_SIZE = 32;
/** Bytes per key: keys start at NODE_HEADER_SIZE, values after room for max_entries keys. */
export const KEY_SIZE = 8;

/** Largest multiple of 3 entries that fit with `valueSize`-byte values (spec 4.2). */
export function maxEntriesFor(valueSize: number): number {
  if (!Number.isInteger(valueSize) || valueSize <= 0 || valueSize > BLOCK_SIZE) {
    throw new ThinError('E_INVALID', `btree value size must be 1..${BLOCK_SIZE} bytes, got ${valueSize}`);
  }
  const n = Math.floor((BLOCK_SIZE - NODE_HEADER_SIZE) / (KEY_SIZE + valueSize));
  return Math.floor(n / 3) * 3;
}

/** Throw unless `k` can be stored as a key (a safe non-negative integer). */
export function checkKey(k: number): void {
  if (!Number.isSafeInteger(k) || k < 0) {
    throw new ThinError(Number.isInteger(k) && k > 0 ? 'E_RANGE' : 'E_INVALID', `btree key must be a whole number from 0 to 2^53-1, got ${k}`, { value: k });
  }
}

export function nodeFlags(d: Uint8Array): number { return getU32(d, NODE_FLAGS); }
export function isLeaf(d: Uint8Array): boolean { return getU32(d, NODE_FLAGS) === LEAF_NODE; }
export function nrEntries(d: Uint8Array): number { return getU32(d, NODE_NR_ENTRIES); }
export function setNrEntries(d: Uint8Array, n: number): void { setU32(d, NODE_NR_ENTRIES, n); }
export function maxEntries(d: Uint8Array): number { return getU32(d, NODE_MAX_ENTRIES); }
export function valueSize(d: Uint8Array): number { return getU32(d, NODE_VALUE_SIZE); }

export function keyOffset(i: number): number { return NODE_HEADER_SIZE + KEY_SIZE * i; }

/** Byte offset of value `i` (values start after room for max_entries keys). */
export function valueOffset(d: Uint8Array, i: number): number {
  return NODE_HEADER_SIZE + KEY_SIZE * getU32(d, NODE_MAX_ENTRIES) + getU32(d, NODE_VALUE_SIZE) * i;
}

export function keyAt(d: Uint8Array, i: number): number {
  return getU64(d, NODE_HEADER_SIZE + KEY_SIZE * i, 'btree key');
}

/**
 * Key `i` as a double without the 2^53 check: exact for every key a caller can pass,
 * and a larger on-disk key still compares as larger (it only throws when read with
 * keyAt). For comparisons only.
 */
export function rawKeyAt(d: Uint8Array, i: number): number {
  return getU64Unchecked(d, NODE_HEADER_SIZE + KEY_SIZE * i);
}

export function setKey(d: Uint8Array, i: number, k: number): void {
  setU64(d, NODE_HEADER_SIZE + KEY_SIZE * i, k, 'btree key');
}

/** Child block number `i` of an internal node (or any 8-byte value). */
export function value64(d: Uint8Array, i: number): number {
  return getU64(d, valueOffset(d, i), 'btree child block number');
}

export function setValue64(d: Uint8Array, i: number, v: number): void {
  setU64(d, valueOffset(d, i), v, 'btree child block number');
}

/**
 * Zero `d` and write a fresh header (blocknr and checksum are stamped on write).
 * `zeroed`: `d` is known to be all zeros already (a new block from the transaction manager).
 */
export function initNode(d: Uint8Array, flags: number, max: number, vsize: number, zeroed = false): void {
  if (!zeroed) d.fill(0);
  setU32(d, NODE_FLAGS, flags);
  setU32(d, NODE_MAX_ENTRIES, max);
  setU32(d, NODE_VALUE_SIZE, vsize);
}

/**
 * Largest index i < n with key[i] <= k, or -1 (the kernel's lower_bound). On keys that
 * are out of order it still returns an i with key[i] <= k < key[i+1].
 */
export function searchLe(d: Uint8Array, n: number, k: number): number {
  if (n === 0) return -1;
  // Keys above 2^53 read as numbers >= 2^53, so they compare above every safe k here
  // and only throw when read with keyAt.
  const first = rawKeyAt(d, 0);
  if (k < first) return -1;
  const last = rawKeyAt(d, n - 1);
  if (k >= last) return n - 1;
  // Invariant: key[lo] <= k < key[hi]. Thin devices map mostly contiguous virtual blocks,
  // so one interpolation probe usually lands on the key and saves the cache misses of a
  // binary search over the whole 2 KiB key array; otherwise it still narrows the range.
  let lo = 0;
  let hi = n - 1;
  const g = Math.floor(((k - first) / (last - first)) * (n - 1));
  if (g > 0 && g < n - 1) {
    const kg = rawKeyAt(d, g);
    if (kg === k) return g;
    if (kg < k) lo = g;
    else hi = g;
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (rawKeyAt(d, mid) <= k) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Smallest index i < n with key[i] >= k, or n. */
export function searchGe(d: Uint8Array, n: number, k: number): number {
  const i = searchLe(d, n, k);
  if (i >= 0 && keyAt(d, i) === k) return i;
  return i + 1;
}

/** Open a gap at `i` (entries i.. move right by one); nr_entries grows by one. */
export function openGap(d: Uint8Array, i: number): void {
  const n = nrEntries(d);
  const vs = valueSize(d);
  const kOff = keyOffset(i);
  d.copyWithin(kOff + 8, kOff, keyOffset(n));
  const vOff = valueOffset(d, i);
  d.copyWithin(vOff + vs, vOff, vOff + vs * (n - i));
  setNrEntries(d, n + 1);
}

/** Delete entry `i`, zeroing the slot it leaves at the end. */
export function deleteAt(d: Uint8Array, i: number): void {
  const n = nrEntries(d);
  const vs = valueSize(d);
  d.copyWithin(keyOffset(i), keyOffset(i + 1), keyOffset(n));
  d.fill(0, keyOffset(n - 1), keyOffset(n));
  const vOff = valueOffset(d, i);
  const vEnd = valueOffset(d, n);
  d.copyWithin(vOff, vOff + vs, vEnd);
  d.fill(0, vEnd - vs, vEnd);
  setNrEntries(d, n - 1);
}

/** Delete entries [i, j), zeroing the freed slots. */
export function deleteRange(d: Uint8Array, i: number, j: number): void {
  if (j <= i) return;
  const n = nrEntries(d);
  const c = j - i;
  d.copyWithin(keyOffset(i), keyOffset(j), keyOffset(n));
  d.fill(0, keyOffset(n - c), keyOffset(n));
  const vs = valueSize(d);
  const vEnd = valueOffset(d, n);
  d.copyWithin(valueOffset(d, i), valueOffset(d, j), vEnd);
  d.fill(0, vEnd - vs * c, vEnd);
  setNrEntries(d, n - c);
}

/**
 * Append `count` entries of `src` starting at `from` to the end of `dst`, or put them in
 * front of `dst`'s entries when `front` is set. The entries stay in `src` (the caller
 * removes them); both nodes must have the same value size.
 */
export function copyEntries(dst: Uint8Array, src: Uint8Array, from: number, count: number, front: boolean): void {
  if (count <= 0) return;
  const n = nrEntries(dst);
  const vs = valueSize(dst);
  if (front) {
    dst.copyWithin(keyOffset(count), keyOffset(0), keyOffset(n));
    const v0 = valueOffset(dst, 0);
    dst.copyWithin(v0 + vs * count, v0, v0 + vs * n);
  }
  const at = front ? 0 : n;
  dst.set(src.subarray(keyOffset(from), keyOffset(from + count)), keyOffset(at));
  const sv = valueOffset(src, from);
  dst.set(src.subarray(sv, sv + vs * count), valueOffset(dst, at));
  setNrEntries(dst, n + count);
}

/** Little-endian u32 at `o` (inlined by the JIT; no bounds check beyond the array's). */
function u32le(d: Uint8Array, o: number): number {
  return (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0;
}

function corrupt(b: number, what: string): ThinError {
  return new ThinError('E_CORRUPT', `btree node (block ${b}): ${what}`, { block: b, kind: 'btree node' });
}

/**
 * Header sanity, after checksum and blocknr passed. Beyond the kernel's checks this
 * also insists on max_entries being a positive multiple of 3, internal nodes holding
 * 8-byte values and keys strictly increasing: every reader then relies on sorted
 * keys, and the check costs far less than the checksum it follows.
 */
export function checkNodeHeader(d: Uint8Array, b: number): void {
  const flags = getU32(d, NODE_FLAGS);
  if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) {
    throw corrupt(b, `flags ${flags} must be exactly one of INTERNAL (1) or LEAF (2)`);
  }
  const n = getU32(d, NODE_NR_ENTRIES);
  const max = getU32(d, NODE_MAX_ENTRIES);
  const vs = getU32(d, NODE_VALUE_SIZE);
  if (max === 0 || max % 3 !== 0) throw corrupt(b, `max_entries ${max} is not a positive multiple of 3`);
  if (vs === 0 || NODE_HEADER_SIZE + (KEY_SIZE + vs) * max > BLOCK_SIZE) {
    throw corrupt(b, `max_entries ${max} with value_size ${vs} does not fit in a ${BLOCK_SIZE}-byte block`);
  }
  if (n > max) throw corrupt(b, `nr_entries ${n} is more than max_entries ${max}`);
  if (flags === INTERNAL_NODE && vs !== INTERNAL_VALUE_SIZE) throw corrupt(b, `internal node with value_size ${vs} (must be 8)`);
  if (n < 2) return;
  // Keys compared as two u32 halves (they may exceed 2^53), each read once: this runs
  // for every node read.
  let prevLo = u32le(d, NODE_HEADER_SIZE);
  let prevHi = u32le(d, NODE_HEADER_SIZE + 4);
  for (let i = 1, o = NODE_HEADER_SIZE + KEY_SIZE; i < n; i++, o += KEY_SIZE) {
    const lo = u32le(d, o);
    const hi = u32le(d, o + 4);
    if (hi < prevHi || (hi === prevHi && lo <= prevLo)) throw corrupt(b, `keys out of order at index ${i}`);
    prevLo = lo;
    prevHi = hi;
  }
}

/** Validator for every btree node: salted checksum, blocknr, then `checkNodeHeader`. */
export const btreeNodeValidator: Validator = saltedValidator('btree node', BTREE_NODE_SALT, checkNodeHeader);
