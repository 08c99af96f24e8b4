/**
 * Durable small files: written whole or not at all, and removed for good, across a crash.
 * Usable from every layer (Docker's records, the mount records, pool.json).
 *
 * Contract: writeAtomic writes a temporary file beside the target, fsyncs it, renames it
 * over the target and fsyncs the directory; a crash leaves the old or the new content,
 * never a mix. removeDurable removes (absent is fine) and fsyncs the directory. Failures
 * are E_IO errors naming the file.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ioError } from './errors';


export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Temporary file, fsync, rename over `file`, fsync the directory. */
export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  try {
    const fd = fs.openSync(tmp, 'w', mode);
    try {
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDir(dir);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw ioError('write', file, e);
  }
}

/** Remove `file` (absent is fine) and fsync its directory. */
export function removeDurable(file: string): void {
  try {
    fs.rmSync(file, { force: true, recursive: true });
    fsyncDir(path.dirname(file));
  } catch (e) {
    throw ioError('remove', file, e);
  }
}

