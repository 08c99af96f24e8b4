/**
 * Resolve the `<pool>` argument: a pool directory (its `metadata` file), or the
 * path of a metadata file or block device itself (e.g. a Docker loop-lvm
 * `devicemapper/metadata`, inspected in place).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ThinError } from '../errors';
import { FileDevice } from '../io/file-device';
import { poolOfMetadata } from '../pool/pool-lock';
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

/**
 * Where `restore` writes, and the pool directory whose lock it must hold while it does:
 * a pool directory's metadata device (its lock); a directory without a pool, or a new
 * path, gets `<dir>/metadata` (the directory is made, mode 0700; its lock is taken too, so two
 * restores cannot interleave); a bare metadata file is locked through the pool whose
 * pool.json beside it names it, if any (`lockDir` undefined otherwise: the caller checks
 * that no other process holds the file open).
 */
export function restoreTarget(pool: string): { target: string; lockDir?: string; madeDir: boolean } {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(pool); } catch { /* a new path */ }
  if (st?.isDirectory()) {
    if (fs.existsSync(path.join(pool, TABLE_FILE))) return { target: resolveDev(pool, loadTable(pool).metadataDev), lockDir: pool, madeDir: false };
    return { target: path.join(pool, 'metadata'), lockDir: pool, madeDir: false };
  }
  if (st) return { target: pool, lockDir: poolOfMetadata(pool), madeDir: false };
  if (pool.endsWith('/') || path.basename(pool) !== 'metadata') {
    fs.mkdirSync(path.dirname(path.resolve(pool)), { recursive: true });
    fs.mkdirSync(pool, { mode: 0o700 }); // it did not exist: the new pool directory is its owner's only
    return { target: path.join(pool, 'metadata'), lockDir: pool, madeDir: true };
  }
  const dir = path.dirname(path.resolve(pool));
  if (!fs.existsSync(dir)) throw new ThinError('E_NOT_FOUND', `cannot restore into ${pool}: directory ${dir} does not exist; create it first`, { file: pool });
  return { target: pool, madeDir: false };
}
