/**
 * io: byte-addressed devices that metadata and data live on.
 *
 * Contract: a BlockDevice reads and writes whole buffers at byte offsets,
 * synchronously; `sync()` returns once everything written before it is durable.
 * `readAsync`, `writevAsync` and `syncAsync` do the same off the event loop (a commit must not
 * stall other clients of the pool); their order against other calls is the
 * caller's to keep.
 * A read that reaches past the end of the device throws E_IO (metadata must never
 * be silently zero-filled). Offsets and sizes are safe integers.
 * Implementations: FileDevice (a regular file or block device, optionally
 * O_DIRECT) and MemoryDevice (in-memory, with fault injection and crash images
 * for tests). Nothing here knows about blocks, checksums or dm-thin.
 */

export interface BlockDevice {
  /** Human-readable name for error messages (a path, or "memory"). */
  readonly name: string;
  readonly readOnly: boolean;
  /** Current size in bytes. */
  size(): number;
  /** Fill `buf` from `offset`; throws E_IO on short read. */
  read(buf: Uint8Array, offset: number): void;
  /**
   * `read` without blocking the event loop (a data device's chunk reads). Past the end
   * of a sparse file reads as zeros here (FileDevice); a MemoryDevice fails as `read` does.
   */
  readAsync(buf: Uint8Array, offset: number): Promise<void>;
  write(buf: Uint8Array, offset: number): void;
  /** Write `bufs` back to back from `offset` (one gathered write where the OS allows). */
  writev(bufs: readonly Uint8Array[], offset: number): void;
  /** Make all earlier writes durable (fdatasync). */
  sync(): void;
  /**
   * `writev` without blocking the event loop. The caller keeps `bufs` unchanged until
   * the promise settles; a failure rejects with the same ThinError `writev` throws.
   */
  writevAsync(bufs: readonly Uint8Array[], offset: number): Promise<void>;
  /** `sync` without blocking the event loop (an fdatasync on the thread pool). */
  syncAsync(): Promise<void>;
  /** Grow (never shrink) the device to `bytes`, where the backing store allows it. */
  grow(bytes: number): void;
  close(): void;
  /** OS file descriptor, when there is one (used by the native chunk copier). */
  readonly fd?: number;
}
