import * as fs from 'fs';
import { ThinError, ioError } from '../errors';
import type { BlockDevice } from './block-device';

export interface FileDeviceOptions {
  readOnly?: boolean;
  /** Open with O_DIRECT; buffers and offsets must then be 4 KiB aligned (use hot.alignedBuffer). */
  direct?: boolean;
  /** Create the file if missing (read-write only). */
  create?: boolean;
}

/**
 * A regular file or block device. The size is read once at open (a regular file's
 * from fstat, a block device's from sysfs) and then follows grow(): thinsim is the
 * only writer that changes it. The read and write loops here (sync and async) are
 * the only ones in io; DataDevice builds on them.
 */
export class FileDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  readonly fd: number;
  readonly isBlockDevice: boolean;
  private cachedSize: number;
  private closed = false;

  constructor(path: string, opts: FileDeviceOptions = {}) {
    this.name = path;
    this.readOnly = !!opts.readOnly;
    let flags = this.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (opts.create && !this.readOnly) flags |= fs.constants.O_CREAT;
    if (opts.direct) flags |= fs.constants.O_DIRECT;
    try {
      this.fd = fs.openSync(path, flags, 0o644);
    } catch (e) {
      throw ioError(this.readOnly ? 'open (read-only)' : 'open', path, e);
    }
    const st = fs.fstatSync(this.fd);
    this.isBlockDevice = st.isBlockDevice();
    // root may open a read-only block device for writing; every write would then fail.
    if (this.isBlockDevice && !this.readOnly && blockDeviceReadOnly(path)) {
      fs.closeSync(this.fd);
      throw new ThinError('E_READ_ONLY', `${path} is a read-only block device; it can be inspected (check, dump, ls, delta) but not written`, { file: path });
    }
    this.cachedSize = this.isBlockDevice ? blockDeviceSize(path) : st.size;
  }

  size(): number {
    return this.cachedSize;
  }

  /**
   * Fill `buf` from `offset` without blocking the event loop. Past the end of the
   * file reads as zeros (a sparse data file that was never written that far).
   */
  async readAsync(buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const n = await new Promise<number>((resolve, reject) => {
        fs.read(this.fd, buf, done, buf.length - done, offset + done, (err, got) => (err ? reject(ioError('read', this.name, err)) : resolve(got)));
      });
      if (n === 0) { buf.fill(0, done); return; }
      done += n;
    }
  }

  read(buf: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, done, buf.length - done, offset + done);
      } catch (e) {
        throw ioError('read', this.name, e);
      }
      if (n === 0) {
        throw new ThinError('E_IO', `short read from ${this.name}: wanted ${buf.length} bytes at offset ${offset}, device ends at ${this.size()}`, { file: this.name, offset });
      }
      done += n;
    }
  }

  write(buf: Uint8Array, offset: number): void {
    this.assertWritable();
    let done = 0;
    while (done < buf.length) {
      try {
        done += fs.writeSync(this.fd, buf, done, buf.length - done, offset + done);
      } catch (e) {
        throw ioError('write', this.name, e);
      }
    }
  }

  writev(bufs: readonly Uint8Array[], offset: number): void {
    this.assertWritable();
    let rest = bufs.filter((b) => b.length > 0);
    let pos = offset;
    while (rest.length > 0) {
      let n: number;
      try {
        n = fs.writevSync(this.fd, rest as Uint8Array[], pos);
      } catch (e) {
        throw ioError('write', this.name, e);
      }
      pos += n;
      rest = afterShortWrite(rest, n);
    }
  }

  async writevAsync(bufs: readonly Uint8Array[], offset: number): Promise<void> {
    this.assertWritable();
    let rest = bufs.filter((b) => b.length > 0);
    let pos = offset;
    while (rest.length > 0) {
      const n = await new Promise<number>((resolve, reject) => {
        fs.writev(this.fd, rest as Uint8Array[], pos, (err, written) => (err ? reject(ioError('write', this.name, err)) : resolve(written)));
      });
      pos += n;
      rest = afterShortWrite(rest, n);
    }
  }

  sync(): void {
    if (this.readOnly) return;
    try {
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw ioError('sync', this.name, e);
    }
  }

  syncAsync(): Promise<void> {
    if (this.readOnly) return Promise.resolve();
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.fd, (err) => (err ? reject(ioError('sync', this.name, err)) : resolve()));
    });
  }

  private assertWritable(): void {
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `${this.name} is open read-only`, { file: this.name });
  }

  grow(bytes: number): void {
    if (bytes <= this.size()) return;
    if (this.isBlockDevice) {
      throw new ThinError('E_UNSUPPORTED', `${this.name} is a block device of ${this.cachedSize} bytes; it cannot grow to ${bytes} (grow the device itself first)`, { file: this.name });
    }
    try {
      fs.ftruncateSync(this.fd, bytes);
    } catch (e) {
      throw ioError('grow', this.name, e);
    }
    this.cachedSize = bytes;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // Dropped on purpose: `closed` rules out EBADF, and on local filesystems close(2)
      // reports no write-back errors; what must be durable was synced (and its failure
      // reported) before close, and a pool that could not sync is already ro or fail.
    }
  }
}

/** What is left of `bufs` after a (short) gathered write of `n` bytes (or more buffers than IOV_MAX). */
function afterShortWrite(bufs: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i].length) n -= bufs[i++].length;
  const rest = bufs.slice(i);
  if (n > 0) rest[0] = rest[0].subarray(n);
  return rest;
}

/** A block device's sysfs attribute file (there are no BLKGETSIZE64 / BLKROGET ioctls from JS). */
function sysfsAttr(path: string, attr: string): string {
  const base = fs.realpathSync(path).split('/').pop()!;
  return fs.readFileSync(`/sys/class/block/${base}/${attr}`, 'utf8').trim();
}

/** Size of a block device in bytes, from sysfs. */
export function blockDeviceSize(path: string): number {
  try {
    return Number(sysfsAttr(path, 'size')) * 512;
  } catch (e) {
    throw ioError('find the size of block device', path, e);
  }
}

/** True when sysfs says the block device is read-only (false when it cannot tell). */
export function blockDeviceReadOnly(path: string): boolean {
  try {
    return sysfsAttr(path, 'ro') === '1';
  } catch {
    return false;
  }
}
