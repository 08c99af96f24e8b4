/**
 * An undo log for a restore into an existing device: a BlockDevice wrapper that,
 * before each write, saves the bytes it is about to overwrite to a file under
 * os.tmpdir() (all-zero ranges only as their place: a sparse file's holes cost no
 * log space), so that a restore failing part way can put the device back exactly
 * as it was.
 *
 * Contract: `rollback()` writes every saved range back, newest first, and syncs;
 * `discard()` forgets them. Either removes the log file. Reads pass through. The
 * log holds at most what the restore wrote (its metadata blocks), on disk, never
 * in memory. A crash of the process loses the log: the device's superblock is
 * then still the old one (a restore writes it last), but free blocks of the old
 * pool may have been overwritten, as with thin_restore.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ioError } from '../errors';
import type { BlockDevice } from '../io/block-device';

export class UndoDevice implements BlockDevice {
  readonly name: string;
  readonly readOnly: boolean;
  readonly fd?: number;
  private readonly dir: string;
  private readonly logPath: string;
  private readonly log: number;
  private logSize = 0;
  /** Saved ranges: [device offset, log offset (-1: zeros), length] each. */
  private readonly ranges: number[] = [];

  constructor(private readonly inner: BlockDevice) {
    this.name = inner.name;
    this.readOnly = inner.readOnly;
    this.fd = inner.fd;
    try {
      this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-restore-undo-'));
      this.logPath = path.join(this.dir, 'undo');
      this.log = fs.openSync(this.logPath, 'w+');
    } catch (e) {
      throw ioError('create the restore undo log in', os.tmpdir(), e);
    }
  }

  size(): number { return this.inner.size(); }
  read(buf: Uint8Array, offset: number): void { this.inner.read(buf, offset); }
  readAsync(buf: Uint8Array, offset: number): Promise<void> { return this.inner.readAsync(buf, offset); }

  write(buf: Uint8Array, offset: number): void {
    this.save(offset, buf.length);
    this.inner.write(buf, offset);
  }

  writev(bufs: readonly Uint8Array[], offset: number): void {
    let len = 0;
    for (const b of bufs) len += b.length;
    this.save(offset, len);
    this.inner.writev(bufs, offset);
  }

  async writevAsync(bufs: readonly Uint8Array[], offset: number): Promise<void> {
    let len = 0;
    for (const b of bufs) len += b.length;
    this.save(offset, len);
    await this.inner.writevAsync(bufs, offset);
  }

  sync(): void { this.inner.sync(); }
  syncAsync(): Promise<void> { return this.inner.syncAsync(); }
  grow(bytes: number): void { this.inner.grow(bytes); }
  close(): void { this.inner.close(); }

  /** Put every saved range back (newest first), sync, and remove the log. */
  rollback(): void {
    try {
      for (let i = this.ranges.length - 3; i >= 0; i -= 3) {
        const [at, from, len] = [this.ranges[i], this.ranges[i + 1], this.ranges[i + 2]];
        const buf = new Uint8Array(len);
        if (from >= 0) readAll(this.log, buf, from, this.logPath);
        this.inner.write(buf, at);
      }
      this.inner.sync();
    } finally {
      this.removeLog();
    }
  }

  /** Forget the saved ranges (the restore committed) and remove the log. */
  discard(): void {
    this.removeLog();
  }

  private save(offset: number, len: number): void {
    const end = Math.min(offset + len, this.inner.size());
    if (end <= offset) return;
    const old = new Uint8Array(end - offset);
    this.inner.read(old, offset);
    if (allZero(old)) {
      this.ranges.push(offset, -1, old.length);
      return;
    }
    let done = 0;
    try {
      while (done < old.length) done += fs.writeSync(this.log, old, done, old.length - done, this.logSize + done);
    } catch (e) {
      throw ioError('save the bytes a restore overwrites to', this.logPath, e);
    }
    this.ranges.push(offset, this.logSize, old.length);
    this.logSize += old.length;
  }

  private removeLog(): void {
    try {
      fs.closeSync(this.log);
    } finally {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

function allZero(b: Uint8Array): boolean {
  const w = new BigUint64Array(b.buffer, b.byteOffset, b.length >>> 3);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
  for (let i = w.length << 3; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function readAll(fd: number, buf: Uint8Array, from: number, file: string): void {
  let done = 0;
  try {
    while (done < buf.length) {
      const n = fs.readSync(fd, buf, done, buf.length - done, from + done);
      if (n === 0) throw new Error(`the undo log ends early at byte ${from + done}`);
      done += n;
    }
  } catch (e) {
    throw ioError('read the restore undo log', file, e);
  }
}
