/**
 * The files (or block devices) under a pool: sparse files for loop-lvm,
 * preallocated ones for direct-lvm, as Docker's devicemapper driver makes them.
 *
 * Contract: `prepareFile` creates a missing file (mode 0600) of the given size or grows a
 * smaller one, and leaves block devices alone; a failure is a ThinError naming the
 * file and what could not be done.
 */
import * as fs from 'fs';
import { ioError, ThinError } from '../errors';
import { hot } from '../hot';
import { blockDeviceSize } from '../io/file-device';
import type { PoolMode } from './table';

/** Size in bytes of a file or block device. */
export function fileSize(p: string): number {
  const st = fs.statSync(p);
  return st.isBlockDevice() ? blockDeviceSize(p) : st.size;
}

/** Create (or check) a data/metadata file: sparse for loop-lvm, preallocated for direct-lvm. */
export function prepareFile(p: string, size: number | undefined, mode: PoolMode, what: string): void {
  const exists = fs.existsSync(p);
  if (exists && fs.statSync(p).isBlockDevice()) return;
  try {
    if (!exists) {
      if (size === undefined) throw new ThinError('E_INVALID', `${what} device ${p} does not exist; give its size`, { file: p });
      fs.writeFileSync(p, '', { mode: 0o600 }); // the pool's bytes are its owner's only (and no umask widens 0600)
    }
    if (size !== undefined && fs.statSync(p).size < size) {
      if (mode === 'direct-lvm') {
        const fd = fs.openSync(p, 'r+');
        try {
          // Preallocate: direct-lvm means no sparse surprises at write time.
          const from = fs.fstatSync(fd).size;
          fs.ftruncateSync(fd, size);
          hot.zeroRange(fd, from, size - from, false);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } else {
        fs.truncateSync(p, size);
      }
    }
  } catch (e) {
    if (e instanceof ThinError) throw e;
    throw ioError(`create ${what} device`, p, e);
  }
}
