/**
 * A pool's data device: chunk I/O on a sparse file (loop-lvm, buffered through the
 * page cache), on a preallocated file or block device opened with O_DIRECT
 * (direct-lvm), or on any BlockDevice handed in (tests: a MemoryDevice with faults).
 *
 * Contract: `read`, `write`, `copy`, `patchCopy` and `sync` are asynchronous and keep
 * the event loop free (libuv's thread pool, or the addon's async copy); `zero` is one
 * fallocate on the calling thread (it does not wait for data). `readNow`/`writeNow`
 * (below) are the only calls that do data I/O on the calling thread, and only when they
 * can do it without waiting. Offsets are byte offsets on the device. Past the end of a
 * sparse file reads as zeros. In direct mode all I/O goes through 4 KiB-aligned buffers
 * from the addon; an unaligned request is widened to 4 KiB boundaries and
 * read-modify-written, so callers must serialise overlapping requests (the pool's chunk
 * locks do). `sync()` makes every completed write durable, and a failure of any call is a
 * ThinError (E_IO naming the file) through its promise (or thrown, for the calls that do
 * not return one). The open, size, grow and read/write loops are FileDevice's. A device
 * without a file descriptor (MemoryDevice) gets the same results by plain reads and
 * writes: no inline I/O, copies through memory, zeros written instead of punched.
 *
 * Inline I/O (`readNow`, `writeNow`), buffered devices only: a trip through the thread
 * pool costs more than a page-cache copy (two thread switches and an event-loop turn,
 * several times the syscall itself on a small request), so the data path first tries
 * the I/O on the calling thread. `readNow` never waits for the disk: it reads only what
 * the page cache holds (preadv2 RWF_NOWAIT) and otherwise says no. Linux offers no such
 * flag for buffered writes, so `writeNow` writes while writes stay fast, and says no for
 * a while (`INLINE_BACKOFF_MS`) after one took longer than `INLINE_SLOW_MS` (the kernel
 * throttling dirty pages or waiting on the journal): then the thread pool takes the
 * wait, and the event loop keeps serving. A "no" changes nothing on the device.
 */
import { ioError, ThinError } from '../errors';
import { hot, requireNative } from '../hot';
import type { BlockDevice } from './block-device';
import { FileDevice } from './file-device';

const ALIGN = 4096;
/** An inline write slower than this sends writes to the thread pool for a while. */
export const INLINE_SLOW_MS = 2;
/** How long writes stay on the thread pool after a slow inline one. */
export const INLINE_BACKOFF_MS = 250;

export interface DataDeviceOptions {
  direct?: boolean;
  readOnly?: boolean;
  /** Allow readNow/writeNow (default true; they are never used on O_DIRECT devices). */
  inline?: boolean;
}

export class DataDevice {
  readonly direct: boolean;
  /** Whether readNow/writeNow may do I/O at all. */
  readonly inline: boolean;
  private readonly file: BlockDevice;
  /** The file descriptor the native calls use; undefined for a device without one (memory). */
  private readonly fdOrNone: number | undefined;
  /** performance.now() before which writes do not run inline (after a slow one). */
  private inlineWritesFrom = 0;

  /** Open the file or block device at `target`, or use the given device (tests). */
  constructor(target: string | BlockDevice, opts: DataDeviceOptions = {}) {
    if (typeof target === 'string') {
      this.direct = !!opts.direct;
      if (this.direct) requireNative('direct-lvm needs aligned buffers for O_DIRECT');
      this.file = new FileDevice(target, { direct: this.direct, readOnly: opts.readOnly });
    } else {
      this.direct = false;
      this.file = target;
    }
    this.fdOrNone = this.file.fd;
    this.inline = !this.direct && opts.inline !== false && this.fdOrNone !== undefined;
  }

  get path(): string { return this.file.name; }
  get isBlockDevice(): boolean { return this.file instanceof FileDevice && this.file.isBlockDevice; }

  /** The file descriptor (only the inline and native paths ask, and only when there is one). */
  private get fd(): number {
    if (this.fdOrNone === undefined) throw new ThinError('E_INVARIANT', `${this.path} has no file descriptor; only a file-backed data device does inline or native I/O`);
    return this.fdOrNone;
  }

  size(): number {
    return this.file.size();
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    if (this.direct) return this.directRead(buf, offset);
    await this.file.readAsync(buf, offset);
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (this.direct) return this.directWrite(buf, offset);
    await this.file.writevAsync([buf], offset);
  }

  /** Whether readNow can ever say yes here (inline I/O on, and a native non-blocking read). */
  get canReadNow(): boolean {
    return this.inline && hot.native;
  }

  /**
   * Read into `buf` at `offset` now, from the page cache, if every byte is there (past
   * the end of a sparse file reads as zeros). false: nothing is promised about `buf`;
   * use read().
   */
  readNow(buf: Uint8Array, offset: number): boolean {
    if (!this.inline) return false;
    let n: number;
    try {
      n = hot.readNoWait(this.fd, buf, offset);
    } catch (e) {
      throw ioError('read', this.path, e);
    }
    if (n < 0) return false;
    if (n < buf.length) buf.fill(0, n);
    return true;
  }

  /** Whether writeNow would write now (it says so until a write or a change of time says otherwise). */
  canWriteNow(): boolean {
    return this.inline && performance.now() >= this.inlineWritesFrom;
  }

  /**
   * Write `bufs`, one after another, at `offset` now, unless inline writes are backing
   * off (or the device is O_DIRECT, or inline I/O is off): false, and nothing was written; use write().
   * Errors throw, as write() would reject.
   */
  writeNow(bufs: readonly Uint8Array[], offset: number): boolean {
    if (!this.inline) return false;
    const t0 = performance.now();
    if (t0 < this.inlineWritesFrom) return false; // what canWriteNow() says, with one clock read
    this.file.writev(bufs, offset);
    const t1 = performance.now();
    if (t1 - t0 > INLINE_SLOW_MS) this.inlineWritesFrom = t1 + INLINE_BACKOFF_MS;
    return true;
  }

  /** Copy `len` bytes within the device (a chunk copy when breaking sharing). */
  async copy(src: number, dst: number, len: number): Promise<void> {
    if (this.direct || this.fdOrNone === undefined) {
      const b = this.direct ? hot.alignedBuffer(len) : new Uint8Array(len);
      await this.file.readAsync(b, src);
      await this.file.writevAsync([b], dst);
      return;
    }
    let done = 0;
    while (done < len) {
      let n: number;
      try {
        n = await hot.copyRangeAsync(this.fd, src + done, this.fd, dst + done, len - done);
      } catch (e) {
        throw ioError('copy a chunk on', this.path, e);
      }
      if (n === 0) {
        // Source ends inside a sparse file: the rest reads as zeros.
        await this.zero(dst + done, len - done, false);
        return;
      }
      done += n;
    }
  }

  /**
   * Copy a chunk of `len` bytes from `src` to `dst` with `patch` laid over it at
   * `patchOff`: a sharing break in one trip through the thread pool (buffered devices
   * only; O_DIRECT needs aligned buffers, so there copy first, then write).
   */
  async patchCopy(src: number, dst: number, len: number, patch: Uint8Array, patchOff: number): Promise<void> {
    if (this.direct) {
      await this.copy(src, dst, len);
      await this.write(patch, dst + patchOff);
      return;
    }
    if (this.fdOrNone === undefined) {
      const chunk = new Uint8Array(len);
      await this.file.readAsync(chunk, src);
      chunk.set(patch, patchOff);
      await this.file.writevAsync([chunk], dst);
      return;
    }
    try {
      await hot.patchCopyAsync(this.fd, src, dst, len, patch, patchOff);
    } catch (e) {
      throw ioError('copy a chunk on', this.path, e);
    }
  }

  /**
   * Zero a range: with `punch`, deallocate it (a discard passed down, giving space
   * back to the host filesystem); otherwise zero it in place.
   */
  async zero(offset: number, len: number, punch: boolean): Promise<void> {
    if (len === 0) return;
    if (this.fdOrNone === undefined) return this.file.writevAsync([new Uint8Array(len)], offset);
    if (this.direct && (offset % ALIGN || len % ALIGN)) {
      return this.directWrite(new Uint8Array(len), offset);
    }
    try {
      hot.zeroRange(this.fd, offset, len, punch);
    } catch (e) {
      if (!this.direct) throw ioError('zero a range of', this.path, e);
      // Block devices without fallocate: write zeros through an aligned buffer.
      await this.file.writevAsync([hot.alignedBuffer(len)], offset);
    }
  }

  sync(): Promise<void> {
    return this.file.syncAsync();
  }

  grow(bytes: number): void {
    this.file.grow(bytes);
  }

  close(): void {
    this.file.close();
  }

  /** JS cannot see a caller's buffer address, so direct reads always go through an aligned bounce buffer. */
  private async directRead(buf: Uint8Array, offset: number): Promise<void> {
    const start = offset - (offset % ALIGN);
    const end = Math.ceil((offset + buf.length) / ALIGN) * ALIGN;
    const b = hot.alignedBuffer(end - start);
    await this.file.readAsync(b, start);
    buf.set(b.subarray(offset - start, offset - start + buf.length));
  }

  private async directWrite(buf: Uint8Array, offset: number): Promise<void> {
    const start = offset - (offset % ALIGN);
    const end = Math.ceil((offset + buf.length) / ALIGN) * ALIGN;
    const b = hot.alignedBuffer(end - start);
    if (start !== offset || end !== offset + buf.length) await this.file.readAsync(b, start);
    b.set(buf, offset - start);
    await this.file.writevAsync([b], start);
  }
}
