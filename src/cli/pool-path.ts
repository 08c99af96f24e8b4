/**
 * Resolve the `<pool>` argument: a pool directory (its `metadata` file), or the
 * path of a metadata file or block device itself (e.g. a Docker loop-lvm
 * `devicemapper/metadata`, inspected in place). `outputOutsidePool` refuses an output
 * path (--output, an export file) that lands inside the pool directory or on one of
 * its devices, through `..`, symbolic links or hard links alike.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ThinError } from '../errors';
import { FileDevice } from '../io/file-device';
import { poolOfMetadata } from '../pool/pool-lock';
import { loadTable, refuseLinkedMembers, resolveDev, TABLE_FILE } from '../pool/table';

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
    refuseLinkedMembers(pool); // <dir>/metadata -> /elsewhere would have restore write there
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

/** The real path of `p` when it exists, else its parent's real path joined with its name. */
function realLocation(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    const dir = path.dirname(path.resolve(p));
    try { return path.join(fs.realpathSync(dir), path.basename(p)); } catch { return path.resolve(p); }
  }
}

const within = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/**
 * `file` (a verb's output) must not be inside the pool `pool` names (its directory, when
 * it is one) nor be one of its devices (same device and inode: a hard link, a symlink, a
 * bare metadata file given as `pool`). E_INVALID naming both otherwise. Returns `file`.
 */
export function outputOutsidePool(file: string, pool: string, what: string): string {
  const real = realLocation(file);
  const refuse = (why: string) => new ThinError('E_INVALID', `${what} ${file} ${why}; thinsim does not write a verb's output into the pool it reads: give a path outside it`, { file, pool });
  const poolReal = realLocation(pool);
  let isDir = false;
  try { isDir = fs.statSync(pool).isDirectory(); } catch { /* the verb reports a missing pool */ }
  if (isDir && within(real, poolReal)) throw refuse(`is inside pool directory ${poolReal}`);
  const devices: string[] = [];
  try { devices.push(metadataPath(pool)); } catch { /* no metadata: the verb reports it */ }
  if (isDir) {
    try { devices.push(resolveDev(pool, loadTable(pool).dataDev)); } catch { /* no pool.json, or a bad one: the verb reports it */ }
  }
  let out: fs.Stats | undefined;
  try { out = fs.statSync(file); } catch { return file; } // a new file cannot be a device that exists
  for (const d of devices) {
    let st: fs.Stats;
    try { st = fs.statSync(d); } catch { continue; }
    if (st.dev === out.dev && st.ino === out.ino) throw refuse(`is the pool's device ${d}`);
  }
  return file;
}
