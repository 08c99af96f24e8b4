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

/** A regular file or block device. Block devices report their size via lseek-like stat of the device. */
export class FileDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  readonly fd: number;
  private readonly isBlockDev: boolean;
  private cachedSize: number;

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
    this.isBlockDev = st.isBlockDevice();
    this.cachedSize = this.isBlockDev ? blockDeviceSize(path) : st.size;
  }

  /** Size as of open or the last grow(): thinsim is the only writer that changes it. */
  size(): number {
    return this.cachedSize;
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
    if (this.readOnly) throw new ThinError('E_READ_ONLY', `${this.name} is open read-only`, { file: this.name });
    let done = 0;
    while (done < buf.length) {
      try {
        done += fs.writeSync(this.fd, buf, done, buf.length - done, offset + done);
      } catch (e) {
        throw ioError('write', this.name, e);
      }
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

  grow(bytes: number): void {
    if (bytes <= this.size()) return;
    if (this.isBlockDev) {
      throw new ThinError('E_UNSUPPORTED', `${this.name} is a block device of ${this.cachedSize} bytes; it cannot grow to ${bytes}`, { file: this.name });
    }
    try {
      fs.ftruncateSync(this.fd, bytes);
    } catch (e) {
      throw ioError('grow', this.name, e);
    }
    this.cachedSize = bytes;
  }

  close(): void {
    try { fs.closeSync(this.fd); } catch { /* already closed */ }
  }
}

/** Size of a block device in bytes, from sysfs (there is no BLKGETSIZE64 ioctl from JS). */
export function blockDeviceSize(path: string): number {
  const real = fs.realpathSync(path);
  const base = real.split('/').pop()!;
  try {
    const sectors = Number(fs.readFileSync(`/sys/class/block/${base}/size`, 'utf8').trim());
    return sectors * 512;
  } catch (e) {
    throw ioError('find the size of block device', path, e);
  }
}
