/**
 * TypeScript twin of every native hot-path call: same results, same errors, no addon.
 *
 * Contract: behaviour is defined by ./hot-path.ts and checked against the addon by
 * test/hot/contract.test.ts on random inputs. The twin is the fallback when the addon is
 * disabled (THINSIM_NO_NATIVE=1) or missing, and the baseline the benchmarks divide by,
 * so it is written the plain, reasonable way (lookup tables, no tricks that depend on
 * alignment), not deliberately slow. Validation order mirrors native/src/exports.rs
 * argument by argument, and errors are the same ThinErrors (./errors.ts).
 */

import * as fs from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { types } from 'node:util';
import type { HotPath, ZeroMethod } from './hot-path';
import { fromFsError, invalidArgument } from './errors';

// ---------------------------------------------------------------------------
// Validation (mirrors native/src/napi/args.rs Args::*): a wrong type and a bad value are
// both caller misuse, ThinError E_INVALID.

function bytesArg(x: unknown, name: string): Uint8Array {
  // util.types also recognises Uint8Arrays from other realms, as the addon does.
  if (!types.isUint8Array(x)) throw invalidArgument(`${name} must be a Uint8Array`);
  return x;
}

function numberArg(x: unknown, name: string): number {
  if (typeof x !== 'number') throw invalidArgument(`${name} must be a number`);
  return x;
}

/** Non-negative safe integer. */
function indexArg(x: unknown, name: string): number {
  const v = numberArg(x, name);
  if (!Number.isSafeInteger(v) || v < 0) throw invalidArgument(`${name} must be a non-negative safe integer, got ${v}`);
  return v;
}

function fdArg(x: unknown, name: string): number {
  const v = numberArg(x, name);
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw invalidArgument(`${name} must be a file descriptor (integer 0..2^31-1), got ${v}`);
  return v;
}

function u32Arg(x: unknown, name: string): number {
  const v = numberArg(x, name);
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalidArgument(`${name} must be an integer in 0..2^32-1, got ${v}`);
  return v;
}

function checkRange(len: number, begin: number, end: number): void {
  const entries = len * 4;
  if (end > entries) throw invalidArgument(`end ${end} is past the bitmap's ${entries} entries`);
  if (begin > end) throw invalidArgument(`begin ${begin} is greater than end ${end}`);
}

function checkEntry(len: number, i: number): void {
  const entries = len * 4;
  if (i >= entries) throw invalidArgument(`entry ${i} is past the bitmap's ${entries} entries`);
}

function checkSpan(off: number, len: number, what: string): void {
  if (off + len > Number.MAX_SAFE_INTEGER) throw invalidArgument(`${what} + len exceeds 2^53-1`);
}

// ---------------------------------------------------------------------------
// Bitmaps

/** Count of entry j (0..3) of byte value b, in dm-thin bit order (high bit first). */
function entryOfByte(b: number, j: number): number {
  const shift = 2 * j;
  return (((b >> shift) & 1) << 1) | ((b >> (shift + 1)) & 1);
}

/** FIRST_FREE[b]: first entry (0..3) of byte b with count 0, or -1. */
const FIRST_FREE = new Int8Array(256);
/** COUNT_OF[k][b]: how many of byte b's four entries have count k. */
const COUNT_OF = [new Uint8Array(256), new Uint8Array(256), new Uint8Array(256), new Uint8Array(256)];
for (let b = 0; b < 256; b++) {
  FIRST_FREE[b] = -1;
  for (let j = 3; j >= 0; j--) {
    const c = entryOfByte(b, j);
    if (c === 0) FIRST_FREE[b] = j;
    COUNT_OF[c][b]++;
  }
}

function getEntry(buf: Uint8Array, i: number): number {
  // Math.floor, not >>: entry numbers pass 2^31 for bitmaps over 512 MiB.
  return entryOfByte(buf[Math.floor(i / 4)], i % 4);
}

/** First free entry in [from, to), or -1: entries up to a byte boundary, then whole bytes via FIRST_FREE. */
function scanFree(buf: Uint8Array, from: number, to: number): number {
  let i = from;
  while (i < to && i % 4 !== 0) {
    if (getEntry(buf, i) === 0) return i;
    i++;
  }
  const endByte = Math.floor(to / 4);
  for (let byte = i / 4; byte < endByte; byte++) {
    const f = FIRST_FREE[buf[byte]];
    if (f >= 0) return byte * 4 + f;
  }
  for (i = Math.max(i, endByte * 4); i < to; i++) {
    if (getEntry(buf, i) === 0) return i;
  }
  return -1;
}

function bitmapGet(buf: Uint8Array, i: number): number {
  const b = bytesArg(buf, 'buf');
  const idx = indexArg(i, 'i');
  checkEntry(b.length, idx);
  return getEntry(b, idx);
}

function bitmapSet(buf: Uint8Array, i: number, v: number): void {
  const b = bytesArg(buf, 'buf');
  const idx = indexArg(i, 'i');
  const val = indexArg(v, 'v');
  checkEntry(b.length, idx);
  if (val > 3) throw invalidArgument(`v must be a count 0..3, got ${val}`);
  const byte = Math.floor(idx / 4);
  const shift = 2 * (idx % 4);
  // The count's high bit goes to the lower bit position: the dm-thin quirk.
  const bits = (((val >> 1) & 1) | ((val & 1) << 1)) << shift;
  b[byte] = (b[byte] & ~(3 << shift)) | bits;
}

function bitmapFindFree(buf: Uint8Array, begin: number, end: number, cursor: number): number {
  const b = bytesArg(buf, 'buf');
  const lo = indexArg(begin, 'begin');
  const hi = indexArg(end, 'end');
  let c = indexArg(cursor, 'cursor');
  checkRange(b.length, lo, hi);
  if (c < lo || c >= hi) c = lo;
  const found = scanFree(b, c, hi);
  return found >= 0 ? found : scanFree(b, lo, c);
}

function bitmapCount(buf: Uint8Array, begin: number, end: number, out: Float64Array): void {
  const b = bytesArg(buf, 'buf');
  const lo = indexArg(begin, 'begin');
  const hi = indexArg(end, 'end');
  if (!types.isFloat64Array(out)) throw invalidArgument('out must be a Float64Array');
  checkRange(b.length, lo, hi);
  if (out.length < 4) throw invalidArgument(`out must have at least 4 elements, got ${out.length}`);
  const counts = [0, 0, 0, 0];
  let i = lo;
  while (i < hi && i % 4 !== 0) counts[getEntry(b, i++)]++;
  const endByte = Math.floor(hi / 4);
  const [c0, c1, c2, c3] = COUNT_OF;
  for (let byte = i / 4; byte < endByte; byte++) {
    const v = b[byte];
    counts[0] += c0[v];
    counts[1] += c1[v];
    counts[2] += c2[v];
    counts[3] += c3[v];
  }
  for (i = Math.max(i, endByte * 4); i < hi; i++) counts[getEntry(b, i)]++;
  out[0] = counts[0];
  out[1] = counts[1];
  out[2] = counts[2];
  out[3] = counts[3];
}

// ---------------------------------------------------------------------------
// CRC-32C

/** Classic byte table of the reflected Castagnoli polynomial 0x82F63B78 (Int32Array keeps values small-integer). */
const CRC_TABLES: Int32Array[] = [];
{
  const t0 = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t0[i] = c;
  }
  CRC_TABLES.push(t0);
  for (let s = 1; s < 8; s++) {
    const prev = CRC_TABLES[s - 1];
    const t = new Int32Array(256);
    for (let i = 0; i < 256; i++) t[i] = (prev[i] >>> 8) ^ t0[prev[i] & 0xff];
    CRC_TABLES.push(t);
  }
}

/** Byte-at-a-time raw register update over buf[start..end). */
function crcBytes(crc: number, buf: Uint8Array, start: number, end: number): number {
  const t = CRC_TABLES[0];
  for (let k = start; k < end; k++) crc = t[(crc ^ buf[k]) & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}

function crc32c(buf: Uint8Array, init?: number): number {
  const b = bytesArg(buf, 'buf');
  const start = init === undefined ? 0xffffffff : u32Arg(init, 'init');
  return crcBytes(start, b, 0, b.length);
}

function blockChecksum(block: Uint8Array, salt: number): number {
  const b = bytesArg(block, 'block');
  const s = u32Arg(salt, 'salt');
  if (b.length < 4) throw invalidArgument(`block must be at least 4 bytes, got ${b.length}`);
  return (crcBytes(0xffffffff, b, 4, b.length) ^ s) >>> 0;
}

/**
 * Slice-by-8 CRC-32C (same result as crc32c). Not part of HotPath: a second baseline for
 * the benchmarks, showing how much of the native gain a better JS algorithm recovers.
 */
export function crc32cSlice8(buf: Uint8Array, init = 0xffffffff): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES;
  let crc = init | 0;
  let k = 0;
  const n8 = buf.length - (buf.length % 8);
  for (; k < n8; k += 8) {
    const lo = crc ^ (buf[k] | (buf[k + 1] << 8) | (buf[k + 2] << 16) | (buf[k + 3] << 24));
    crc =
      t7[lo & 0xff] ^ t6[(lo >>> 8) & 0xff] ^ t5[(lo >>> 16) & 0xff] ^ t4[lo >>> 24] ^
      t3[buf[k + 4]] ^ t2[buf[k + 5]] ^ t1[buf[k + 6]] ^ t0[buf[k + 7]];
  }
  return crcBytes(crc, buf, k, buf.length);
}

// ---------------------------------------------------------------------------
// Zero test

function isZero(buf: Uint8Array): boolean {
  const b = bytesArg(buf, 'buf');
  for (let k = 0; k < b.length; k++) if (b[k] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Mapping leaves (mirrors native/src/leaf.rs)

function leafRuns(leaf: Uint8Array, withTime: boolean, out: Float64Array): number {
  const d = bytesArg(leaf, 'leaf');
  if (typeof withTime !== 'boolean') throw invalidArgument('withTime must be a boolean');
  if (!types.isFloat64Array(out)) throw invalidArgument('out must be a Float64Array');
  if (d.length < 32) throw invalidArgument(`leaf must be at least 32 bytes, got ${d.length}`);
  const u32 = (o: number): number => (d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24)) >>> 0;
  const vs = u32(24);
  if (vs !== 8) throw invalidArgument(`leaf value_size must be 8 (block_time), got ${vs}`);
  const nr = u32(16);
  const max = u32(20);
  if (nr > max || 32 + 16 * max > d.length) throw invalidArgument(`leaf header does not fit: nr_entries ${nr}, max_entries ${max} in ${d.length} bytes`);
  if (out.length < 4 * nr) throw invalidArgument(`out must have at least ${4 * nr} elements, got ${out.length}`);
  const values = 32 + 8 * max;
  let k = 0;
  let o = 0, b = 0, len = 0, t = 0;
  for (let i = 0; i < nr; i++) {
    const kAt = 32 + 8 * i;
    const hi = u32(kAt + 4);
    if (hi > 0x1fffff) return -1; // key beyond 2^53 - 1
    const key = hi * 0x100000000 + u32(kAt);
    const v = values + 8 * i;
    const data = u32(v + 4) * 256 + d[v + 3];
    const time = d[v] | (d[v + 1] << 8) | (d[v + 2] << 16);
    if (len > 0 && key === o + len && data === b + len && (!withTime || time === t)) { len++; continue; }
    if (len > 0) { out[k] = o; out[k + 1] = b; out[k + 2] = len; out[k + 3] = t; k += 4; }
    o = key; b = data; len = 1; t = time;
  }
  if (len > 0) { out[k] = o; out[k + 1] = b; out[k + 2] = len; out[k + 3] = t; k += 4; }
  return k / 4;
}

// ---------------------------------------------------------------------------
// Chunk I/O

const BOUNCE_SIZE = 1 << 20;
/** Reused by the synchronous copy (allocating per call would dominate small copies). */
let bounce: Buffer | undefined;
const ZEROS = Buffer.alloc(256 * 1024);

function copyArgs(fdIn: unknown, offIn: unknown, fdOut: unknown, offOut: unknown, len: unknown): [number, number, number, number, number] {
  const a = fdArg(fdIn, 'fdIn');
  const b = indexArg(offIn, 'offIn');
  const c = fdArg(fdOut, 'fdOut');
  const d = indexArg(offOut, 'offOut');
  const n = indexArg(len, 'len');
  checkSpan(b, n, 'offIn');
  checkSpan(d, n, 'offOut');
  return [a, b, c, d, n];
}

function writeAllSync(fd: number, buf: Uint8Array, n: number, pos: number): void {
  let w = 0;
  while (w < n) w += fs.writeSync(fd, buf, w, n - w, pos + w);
}

function copyRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number {
  const [fi, oi, fo, oo, n] = copyArgs(fdIn, offIn, fdOut, offOut, len);
  if (n === 0) return 0;
  const buf = (bounce ??= Buffer.allocUnsafe(BOUNCE_SIZE));
  let done = 0;
  try {
    while (done < n) {
      const got = fs.readSync(fi, buf, 0, Math.min(n - done, buf.length), oi + done);
      if (got === 0) break; // EOF of the source: stop, never zero-fill
      writeAllSync(fo, buf, got, oo + done);
      done += got;
    }
  } catch (e) {
    throw fromFsError(e);
  }
  return done;
}

function readAsync(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, len, pos, (err, n) => (err ? reject(fromFsError(err)) : resolve(n))));
}
function writeAsync(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(fromFsError(err)) : resolve(n))));
}

function copyRangeAsync(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<number> {
  // Validate now so argument errors throw synchronously, as the addon does.
  const [fi, oi, fo, oo, n] = copyArgs(fdIn, offIn, fdOut, offOut, len);
  return (async () => {
    // Each call owns its buffer: concurrent async copies must not share one.
    const buf = Buffer.allocUnsafe(Math.min(n, BOUNCE_SIZE));
    let done = 0;
    while (done < n) {
      const got = await readAsync(fi, buf, Math.min(n - done, buf.length), oi + done);
      if (got === 0) break;
      let w = 0;
      while (w < got) w += await writeAsync(fo, buf, w, got - w, oo + done + w);
      done += got;
    }
    return done;
  })();
}

function patchCopyAsync(fd: number, src: number, dst: number, len: number, patch: Uint8Array, patchOff: number): Promise<number> {
  const f = fdArg(fd, 'fd');
  const s = indexArg(src, 'src');
  const d = indexArg(dst, 'dst');
  const n = indexArg(len, 'len');
  const p = Buffer.from(bytesArg(patch, 'patch'));
  const po = indexArg(patchOff, 'patchOff');
  checkSpan(s, n, 'src');
  checkSpan(d, n, 'dst');
  if (po + p.length > n) throw invalidArgument(`patchOff ${po} + patch length ${p.length} is past len ${n}`);
  if (s < d + n && d < s + n) throw invalidArgument(`source ${s}+${n} and destination ${d}+${n} overlap`);
  return (async () => {
    const after = po + p.length;
    for (const [from, to] of [[0, po], [after, n]]) {
      if (to <= from) continue;
      const got = await copyRangeAsync(f, s + from, f, d + from, to - from);
      if (got < to - from) await writeAllAsync(f, Buffer.alloc(to - from - got), d + from + got);
    }
    await writeAllAsync(f, p, d + po);
    return n;
  })();
}

async function writeAllAsync(fd: number, buf: Buffer, pos: number): Promise<void> {
  let w = 0;
  while (w < buf.length) w += await writeAsync(fd, buf, w, buf.length - w, pos + w);
}

function readNoWait(fd: number, buf: Uint8Array, off: number): number {
  fdArg(fd, 'fd');
  const b = bytesArg(buf, 'buf');
  checkSpan(indexArg(off, 'off'), b.length, 'off');
  return -1;
}

function zeroRange(fd: number, off: number, len: number, punch: boolean): ZeroMethod {
  const f = fdArg(fd, 'fd');
  const o = indexArg(off, 'off');
  const n = indexArg(len, 'len');
  if (typeof punch !== 'boolean') throw invalidArgument('punch must be a boolean');
  checkSpan(o, n, 'off');
  if (n === 0) return 0;
  let end = o + n;
  try {
    if (punch) {
      // A punch never changes the size; match that for regular files (block devices report size 0).
      const st = fs.fstatSync(f);
      if (st.isFile()) end = Math.min(end, st.size);
    }
    for (let pos = o; pos < end; ) {
      const k = Math.min(end - pos, ZEROS.length);
      writeAllSync(f, ZEROS, k, pos);
      pos += k;
    }
  } catch (e) {
    throw fromFsError(e);
  }
  return 3;
}

// ---------------------------------------------------------------------------
// Buffers

const MAX_ALIGN = 1 << 20;

function alignedBuffer(size: number, align?: number): Buffer {
  const s = indexArg(size, 'size');
  const a = align === undefined ? 4096 : indexArg(align, 'align');
  if (a === 0 || a > MAX_ALIGN || (a & (a - 1)) !== 0) throw invalidArgument(`align must be a power of two in 1..${MAX_ALIGN}, got ${a}`);
  if (s > bufferConstants.MAX_LENGTH) throw invalidArgument(`cannot create a Buffer of ${s} bytes`);
  // JS cannot choose (or see) the address: this buffer is NOT guaranteed to be aligned.
  return Buffer.alloc(s);
}

export const twin: HotPath = Object.freeze({
  native: false,
  loadError: undefined,
  noop: () => 0,
  bitmapGet,
  bitmapSet,
  bitmapFindFree,
  bitmapCount,
  crc32c,
  blockChecksum,
  isZero,
  leafRuns,
  copyRange,
  copyRangeAsync,
  patchCopyAsync,
  zeroRange,
  readNoWait,
  alignedBuffer,
});
