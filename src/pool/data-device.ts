/**
 * The pool's data device: chunk I/O on a sparse file (loop-lvm, buffered through
 * the page cache) or a preallocated file / block device opened with O_DIRECT
 * (direct-lvm).
 *
 * Contract: every call is asynchronous and runs on the libuv thread pool (or the
 * addon's async copy), so the event loop stays free. Offsets are byte offsets on
 * the device. In direct mode all I/O goes through 4 KiB-aligned buffers from the
 * addon; an unaligned request is widened to 4 KiB boundaries and read-modify-
 * written, so callers must serialise overlapping requests (the pool's chunk locks
 * do). `sync()` makes every completed write durable.
 */
import * as fs from 'fs';
import { promisify } from 'util';
import { ioError, ThinError } from '../errors';
import { hot, requireNative } from '../hot';
import { blockDeviceSize } from '../io/file-device';

const pread = promisify(fs.read);
const pwrite = promisify(fs.write);
const fdatasync = promisify(fs.fdatasync);

const ALIGN = 4096;

export interface DataDeviceOptions {
  direct?: boolean;
  readOnly?: boolean;
}

export class DataDevice {
  readonly path: string;
  readonly fd: number;
  readonly direct: boolean;
  readonly isBlockDevice: boolean;
  private closed = false;

  constructor(path: string, opts: DataDeviceOptions = {}) {
    this.path = path;
    this.direct = !!opts.direct;
    let flags = opts.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (this.direct) {
      requireNative('direct-lvm needs aligned buffers for O_DIRECT');
      flags |= fs.constants.O_DIRECT;
    }
    try {
      this.fd = fs.openSync(path, flags);
    } catch (e) {
      throw ioError('open data device', path, e);
    }
    this.isBlockDevice = fs.fstatSync(this.fd).isBlockDevice();
  }

  size(): number {
    return this.isBlockDevice ? blockDeviceSize(this.path) : fs.fstatSync(this.fd).size;
  }

  /** Read `buf.length` bytes at `offset`. Past the end of a sparse file reads zeros. */
  async read(buf: Uint8Array, offset: number): Promise<void> {
    if (this.direct) return this.directRead(buf, offset);
    await this.fullRead(buf, offset);
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    if (this.direct) return this.directWrite(buf, offset);
    await this.fullWrite(buf, offset);
  }

  /** Copy `len` bytes within the device (a chunk copy when breaking sharing). */
  async copy(src: number, dst: number, len: number): Promise<void> {
    if (this.direct) {
      const b = hot.alignedBuffer(len);
      await this.fullRead(b, src);
      await this.fullWrite(b, dst);
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
   * Zero a range: with `punch`, deallocate it (a discard passed down, giving space
   * back to the host filesystem); otherwise zero it in place.
   */
  async zero(offset: number, len: number, punch: boolean): Promise<void> {
    if (len === 0) return;
    if (this.direct && (offset % ALIGN || len % ALIGN)) {
      return this.directWrite(new Uint8Array(len), offset);
    }
    try {
      hot.zeroRange(this.fd, offset, len, punch);
    } catch (e) {
      if (!this.direct) throw ioError('zero a range of', this.path, e);
      // Block devices without fallocate: write zeros through an aligned buffer.
      await this.fullWrite(hot.alignedBuffer(len), offset);
    }
  }

  async sync(): Promise<void> {
    try {
      await fdatasync(this.fd);
    } catch (e) {
      throw ioError('sync', this.path, e);
    }
  }

  grow(bytes: number): void {
    if (bytes <= this.size()) return;
    if (this.isBlockDevice) {
      throw new ThinError('E_UNSUPPORTED', `data device ${this.path} is a block device of ${this.size()} bytes; grow the device itself first`, { file: this.path });
    }
    try {
      fs.ftruncateSync(this.fd, bytes);
    } catch (e) {
      throw ioError('grow', this.path, e);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { fs.closeSync(this.fd); } catch { /* already closed */ }
  }

  private async fullRead(buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        ({ bytesRead: n } = await pread(this.fd, buf, done, buf.length - done, offset + done));
      } catch (e) {
        throw ioError('read', this.path, e);
      }
      if (n === 0) { buf.fill(0, done); return; }
      done += n;
    }
  }

  private async fullWrite(buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      try {
        done += (await pwrite(this.fd, buf, done, buf.length - done, offset + done)).bytesWritten;
      } catch (e) {
        throw ioError('write', this.path, e);
      }
    }
  }

  /** JS cannot see a caller's buffer address, so direct reads always go through an aligned bounce buffer. */
  private async directRead(buf: Uint8Array, offset: number): Promise<void> {
    const start = offset - (offset % ALIGN);
    const end = Math.ceil((offset + buf.length) / ALIGN) * ALIGN;
    const b = hot.alignedBuffer(end - start);
    await this.fullRead(b, start);
    buf.set(b.subarray(offset - start, offset - start + buf.length));
  }

  private async directWrite(buf: Uint8Array, offset: number): Promise<void> {
    const start = offset - (offset % ALIGN);
    const end = Math.ceil((offset + buf.length) / ALIGN) * ALIGN;
    const b = hot.alignedBuffer(end - start);
    if (start !== offset || end !== offset + buf.length) await this.fullRead(b, start);
    b.set(buf, offset - start);
    await this.fullWrite(b, start);
  }
}
