/**
 * The HotPath interface: the calls thinsim makes on its hot paths, implemented twice
 * (Rust addon in native/, TypeScript twin in ./twin.ts) with identical behaviour.
 *
 * Shared contract of every implementation:
 * - Offsets, lengths and indices are JS numbers that must be non-negative safe integers.
 * - Every error is a ThinError (./errors.ts). Arguments are validated left to right; a
 *   wrong JS type or a bad value (negative, fractional, out of range) throws E_INVALID.
 *   Expected outcomes ("no free entry", "source ended") are return values, never
 *   exceptions.
 * - A failed syscall throws (or, for async calls, rejects with) a ThinError whose code
 *   follows the errno (ENOSPC -> ENOSPC, ENOENT -> E_NOT_FOUND, others -> E_IO) and whose
 *   `details.errno` is the errno name ('EBADF', 'ENOSPC', ...), `details.syscall` the call.
 *   A fault inside the addon itself (a panic) is E_NATIVE.
 * - Buffers are caller-owned and may be unaligned slices of a larger ArrayBuffer; nothing
 *   is retained after a call returns.
 */

/** How zeroRange did its job. */
export const ZERO_METHOD = {
  /** len was 0: nothing done. */
  NOTHING: 0,
  /** fallocate(PUNCH_HOLE|KEEP_SIZE): blocks deallocated, file size unchanged. */
  PUNCHED: 1,
  /** fallocate(ZERO_RANGE): zeroed in place (may stay allocated). */
  ZERO_RANGE: 2,
  /** Zeros were written with pwrite. */
  WROTE_ZEROS: 3,
} as const;
export type ZeroMethod = (typeof ZERO_METHOD)[keyof typeof ZERO_METHOD];

export interface HotPath {
  /** true for the Rust addon, false for the TypeScript twin. */
  readonly native: boolean;
  /** Why the addon is not in use (disabled by env, missing, failed to load); undefined when native. */
  readonly loadError: string | undefined;

  /** Returns 0. Measures the cost of a call and nothing else. */
  noop(): number;

  // --- 2-bit reference-count bitmaps, dm-thin encoding (spec §6.1): entry i is in byte
  // i>>2; bit 2*(i&3) is the HIGH bit of the count, bit 2*(i&3)+1 the LOW bit.
  // A bitmap of n bytes holds 4n entries.

  /** Count (0..3) of entry i. E_INVALID if i >= 4 * buf.length. O(1). */
  bitmapGet(buf: Uint8Array, i: number): number;
  /** Set entry i to v (integer 0..3). O(1). */
  bitmapSet(buf: Uint8Array, i: number, v: number): void;
  /**
   * First entry with count 0, scanning [cursor, end) then wrapping to [begin, cursor);
   * -1 if none. A cursor outside [begin, end) means begin. Needs begin <= end <= 4 * buf.length.
   * O(end - begin); the native one skips 32 entries per 64-bit word.
   */
  bitmapFindFree(buf: Uint8Array, begin: number, end: number, cursor: number): number;
  /**
   * Writes into out[0..3] the number of entries in [begin, end) with count 0, 1, 2, 3.
   * `out` is a Float64Array (length >= 4) because counts can pass 2^32.
   */
  bitmapCount(buf: Uint8Array, begin: number, end: number, out: Float64Array): void;

  // --- checksums (spec §2.1)

  /**
   * RAW CRC-32C register after feeding buf: reflected polynomial 0x82F63B78, initial
   * value `init` (default 0xFFFFFFFF), NO final inversion. Standard CRC-32C is
   * `(crc32c(buf) ^ 0xFFFFFFFF) >>> 0`. Returns an unsigned 32-bit number. Chainable:
   * crc32c(b, crc32c(a)) === crc32c(a ++ b).
   */
  crc32c(buf: Uint8Array, init?: number): number;
  /** dm-thin metadata block checksum: crc32c(block[4..]) ^ salt, unsigned. E_INVALID if block.length < 4. */
  blockChecksum(block: Uint8Array, salt: number): number;

  /** Whether every byte of buf is zero (true for an empty buf). */
  isZero(buf: Uint8Array): boolean;

  // --- mapping leaves (spec §4 node layout, §5.1 block_time)

  /**
   * Decode a btree leaf of block_time values (its header: nr_entries at byte 16,
   * max_entries at 20, value_size at 24, which must be 8; keys from byte 32, values after
   * room for max_entries keys) into its maximal runs: entries join a run while origin and
   * data block both advance by one and, when `withTime`, the time stays the same (without
   * it a run keeps its first entry's time). Run k is out[4k..4k+3] = origin, data block,
   * length, time. Returns the number of runs, or -1 when a key is beyond 2^53-1 (what
   * `out` holds then is unspecified: the caller decodes entry by entry and reports it).
   * E_INVALID: a leaf shorter than 32 bytes, value_size not 8, nr_entries > max_entries
   * or max_entries not fitting the buffer, `out` shorter than 4 * nr_entries. The flags,
   * checksum and block number are not looked at (the caller validated the node).
   */
  leafRuns(leaf: Uint8Array, withTime: boolean, out: Float64Array): number;

  // --- chunk I/O on caller-owned file descriptors (never closed, file positions untouched)

  /**
   * Copy len bytes from fdIn@offIn to fdOut@offOut; returns the bytes copied. The result
   * is short only when the source ends first: bytes past the source's EOF are neither
   * copied nor zero-filled. offIn+len and offOut+len must stay safe integers.
   * Native: copy_file_range (extent sharing on XFS/btrfs), falling back to pread/pwrite
   * on EXDEV/ENOSYS/EINVAL/EOPNOTSUPP. Overlapping ranges of one file: unspecified.
   * Blocks the event loop; prefer copyRangeAsync for large copies off the hot path.
   */
  copyRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number;
  /** copyRange on the libuv thread pool. Argument errors throw synchronously; I/O errors reject. */
  copyRangeAsync(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<number>;
  /**
   * Break a shared chunk in one trip through the thread pool: copy [0, len) from `src`
   * to `dst` of the same file, except [patchOff, patchOff+patch.length), which gets
   * `patch`. Source bytes past the source's EOF read as zeros. The source and
   * destination ranges must not overlap, and patchOff+patch.length <= len (else a
   * synchronous E_INVALID). The patch is copied before the call returns, so the caller
   * may reuse it at once. Resolves with len; I/O errors reject.
   */
  patchCopyAsync(fd: number, src: number, dst: number, len: number, patch: Uint8Array, patchOff: number): Promise<number>;
  /**
   * Read buf.length bytes at `off` only if that needs no I/O wait (the page cache has
   * them): the bytes read, short only at the file's end, or -1 for "not without
   * waiting", after which the caller reads the ordinary way (what was read is read
   * again). Native: preadv2 with RWF_NOWAIT; -1 also where the kernel or filesystem
   * cannot say. The twin always returns -1 (Node has no non-blocking file read).
   * Other failures throw. For buffered files: O_DIRECT reads are not page-cache reads.
   */
  readNoWait(fd: number, buf: Uint8Array, off: number): number;
  /**
   * Make [off, off+len) read as zeros; returns which method ran (ZERO_METHOD).
   * punch=true never changes the file size (PUNCH_HOLE|KEEP_SIZE; the write fallback stops
   * at EOF of a regular file). punch=false may grow the file like a write (ZERO_RANGE, or
   * written zeros). The twin always writes zeros (3), or returns 0 when len is 0.
   */
  zeroRange(fd: number, off: number, len: number, punch: boolean): ZeroMethod;

  /**
   * A zero-filled Buffer of `size` bytes whose data address is a multiple of `align`
   * (power of two, 1..2^20, default 4096), for O_DIRECT I/O. Only the native one really
   * aligns: the twin returns Buffer.alloc(size) (JS cannot see addresses), so O_DIRECT
   * callers must use requireNative().
   */
  alignedBuffer(size: number, align?: number): Buffer;
}
