/**
 * Resolve the `<pool>` argument: a pool directory (its `metadata` file), or the
 * path of a metadata file or block device itself (e.g. a Docker loop-lvm
 * `devicemapper/metadata`, inspected in place).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ThinError } from '../errors';
import { FileDevice } from '../io/file-device';
import { loadTable, resolveDev, TABLE_FILE } from '../pool/table';

export function metadataPath(pool: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(pool);
  } catch {
    throw new ThinError('E_NOT_FOUND', `${pool} does not exist: give a pool directory or a metadata file`, { file: pool });
  }
  if (st.isDirectory()) {
    if (fs.existsSync(path.join(pool, TABLE_FILE))) return resolveDev(pool, loadTable(pool).metadataDev);
    const p = path.join(pool, 'metadata');
    if (!fs.existsSync(p)) throw new ThinError('E_NOT_FOUND', `${pool} is a directory without a metadata file; create a pool first (thinsim pool create) or restore into it`, { file: p });
    return p;
  }
  return pool;
}

/** Open a pool's metadata device read-only (allowed while another process writes). */
export function openMetadataReadOnly(pool: string): FileDevice {
  return new FileDevice(metadataPath(pool), { readOnly: true });
}

/** Where `restore` writes: a pool directory's metadata device (created if missing), else the path itself. */
export function restoreTarget(pool: string): string {
  if (fs.existsSync(pool) && fs.statSync(pool).isDirectory() && fs.existsSync(path.join(pool, TABLE_FILE))) {
    return resolveDev(pool, loadTable(pool).metadataDev);
  }
  if (fs.existsSync(pool)) return fs.statSync(pool).isDirectory() ? path.join(pool, 'metadata') : pool;
  if (pool.endsWith('/') || path.basename(pool) !== 'metadata') {
    fs.mkdirSync(pool, { recursive: true });
    return path.join(pool, 'metadata');
  }
  return pool;
}
