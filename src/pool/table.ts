/**
 * The pool table (`pool.json`): what the kernel's thin-pool target line holds
 * (devices, data block size, low-water mark, feature flags), plus what LVM or
 * Docker would keep beside it (backend mode, thin device sizes).
 *
 * Contract: `loadTable` validates every field and names the bad one, the file and what
 * to do (E_PARSE); `requireThinSizes` checks that each device the metadata holds has a
 * size here (a pool.json is never trusted: a NaN size would let I/O past a device's end);
 * `saveTable` replaces the file atomically and durably (durable.ts: temporary file, fsync, rename, fsync the directory), so a crash
 * leaves either the old or the new table; the file is mode 0600 (its owner's only), also
 * after every rewrite. `refuseLinkedMembers` refuses (E_INVALID) a pool directory whose
 * members (pool.json, data, metadata, pool.lock, docker, run, or the relative device
 * paths pool.json names) are symbolic links: thinsim never follows a link planted inside
 * a pool to write somewhere else. loadTable applies it, and refuses a relative device
 * path that leaves the pool directory.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeAtomic } from '../durable';
import { ioError, ThinError } from '../errors';
import { checkDataBlockSize, SECTOR_SIZE } from '../units';

/** dm-thin device ids are 24 bits. */
const MAX_THIN_ID = 2 ** 24 - 1;

export type PoolMode = 'loop-lvm' | 'direct-lvm';
export type DiscardMode = 'passdown' | 'nopassdown' | 'ignore';

export interface PoolFeatures {
  skipBlockZeroing: boolean;
  ignoreDiscard: boolean;
  noDiscardPassdown: boolean;
  readOnly: boolean;
  errorIfNoSpace: boolean;
}

export interface PoolTable {
  version: 1;
  mode: PoolMode;
  /** Paths as given (absolute, or relative to the pool directory). */
  dataDev: string;
  metadataDev: string;
  /** In 512-byte sectors: a multiple of 128 from 128 to 2097152. */
  dataBlockSize: number;
  /** Free data blocks at which the pool raises its low-water-mark event. */
  lowWaterMark: number;
  features: PoolFeatures;
  /** How long writes wait for a resize when out of data space (seconds), unless error_if_no_space. */
  noSpaceTimeout: number;
  /** Thin device sizes in bytes (the kernel keeps them in the thin target's table, not in metadata). */
  thins: Record<string, { size: number }>;
}

export const TABLE_FILE = 'pool.json';

/**
 * What thinsim makes inside a pool directory: the table, the devices, the lock, Docker's
 * records (src/layers: docker/) and the mount records (src/mounts: run/). Named here, not
 * imported, so the pool layer can guard them without importing the layers above it.
 */
export const POOL_MEMBERS: readonly string[] = [TABLE_FILE, 'data', 'metadata', 'pool.lock', 'docker', 'run'];

/**
 * Refuse a pool directory in which a member thinsim writes (POOL_MEMBERS, and `table`'s
 * relative device paths) is a symbolic link: E_INVALID naming the member and its target.
 */
export function refuseLinkedMembers(dir: string, table?: PoolTable): void {
  const names = new Set(POOL_MEMBERS);
  if (table) for (const p of [table.dataDev, table.metadataDev]) if (!path.isAbsolute(p)) names.add(p);
  for (const name of names) {
    const p = path.join(dir, name);
    let st: fs.Stats;
    try { st = fs.lstatSync(p); } catch { continue; } // absent (or unreadable: the open that needs it reports it)
    if (st.isSymbolicLink()) {
      let target = '?';
      try { target = fs.readlinkSync(p); } catch { /* gone meanwhile */ }
      throw new ThinError('E_INVALID', `${p} is a symbolic link (to ${target}); thinsim does not follow links inside a pool directory: put the real ${name} there, or give an absolute --data-dev/--metadata-dev at pool create`, { file: p, target });
    }
  }
}

export function defaultFeatures(): PoolFeatures {
  return { skipBlockZeroing: false, ignoreDiscard: false, noDiscardPassdown: false, readOnly: false, errorIfNoSpace: false };
}

export function discardMode(f: PoolFeatures): DiscardMode {
  return f.ignoreDiscard ? 'ignore' : f.noDiscardPassdown ? 'nopassdown' : 'passdown';
}

export function resolveDev(dir: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(dir, p);
}

export function loadTable(dir: string): PoolTable {
  const file = path.join(dir, TABLE_FILE);
  refuseLinkedMembers(dir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new ThinError('E_INVALID', `${dir} is a file, not a thinsim pool: a pool is a directory (thinsim pool create DIR)`, { file: dir });
    }
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ThinError('E_NOT_FOUND', `${dir} is not a thinsim pool (no ${TABLE_FILE}); create one with "thinsim pool create ${dir}"`, { file });
    }
    throw ioError('read', file, e);
  }
  let t: PoolTable;
  try {
    t = JSON.parse(text);
  } catch (e) {
    throw new ThinError('E_PARSE', `${file} is not valid JSON: ${(e as Error).message}`, { file });
  }
  const fix = `fix it in ${file}, or recreate the pool (thinsim pool create) and restore its metadata`;
  const bad = (field: string, why: string) => new ThinError('E_PARSE', `${file}: ${field} ${why}; ${fix}`, { file, field });
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw bad('the top level', 'must be a JSON object');
  if (t.version !== 1) throw bad('version', `is ${JSON.stringify(t.version)}; this thinsim reads version 1`);
  if (t.mode !== 'loop-lvm' && t.mode !== 'direct-lvm') throw bad('mode', `is ${JSON.stringify(t.mode)}; it must be "loop-lvm" or "direct-lvm"`);
  for (const f of ['dataDev', 'metadataDev'] as const) {
    if (typeof t[f] !== 'string' || t[f] === '') throw bad(f, `is ${JSON.stringify(t[f])}; it must be the path of the ${f === 'dataDev' ? 'data' : 'metadata'} file or block device`);
    if (t[f].includes('\0')) throw bad(f, 'holds a NUL byte; it must be a path');
    const rel = path.normalize(t[f]);
    if (!path.isAbsolute(rel) && (rel === '.' || rel === '..' || rel.startsWith('../'))) {
      throw bad(f, `is ${JSON.stringify(t[f])}, which leaves the pool directory; a relative path must name a file inside it (or give an absolute path)`);
    }
  }
  try { checkDataBlockSize(t.dataBlockSize); } catch (e) { throw bad('dataBlockSize', (e as Error).message); }
  if (!Number.isSafeInteger(t.lowWaterMark) || t.lowWaterMark < 0) throw bad('lowWaterMark', `is ${JSON.stringify(t.lowWaterMark)}; it must be a whole number of blocks`);
  const features: unknown = t.features ?? {};
  if (features === null || typeof features !== 'object' || Array.isArray(features)) throw bad('features', 'must be an object of true/false flags');
  const known = defaultFeatures();
  for (const [k, v] of Object.entries(features)) {
    if (!(k in known)) throw bad(`features.${k}`, `is not a feature; the features are ${Object.keys(known).join(', ')}`);
    if (typeof v !== 'boolean') throw bad(`features.${k}`, `is ${JSON.stringify(v)}; it must be true or false`);
  }
  t.features = { ...known, ...(features as Partial<PoolFeatures>) };
  if (t.noSpaceTimeout === undefined) t.noSpaceTimeout = 60;
  else if (!(typeof t.noSpaceTimeout === 'number' && Number.isFinite(t.noSpaceTimeout) && t.noSpaceTimeout >= 0)) {
    throw bad('noSpaceTimeout', `is ${JSON.stringify(t.noSpaceTimeout)}; it must be a number of seconds, 0 or more`);
  }
  const thins: unknown = t.thins ?? {};
  if (thins === null || typeof thins !== 'object' || Array.isArray(thins)) throw bad('thins', 'must be an object of device id -> { "size": bytes }');
  for (const [id, entry] of Object.entries(thins)) {
    if (!/^\d+$/.test(id) || Number(id) > MAX_THIN_ID) throw bad(`thins["${id}"]`, `is not a thin device id (a whole number from 0 to ${MAX_THIN_ID})`);
    const size = (entry as { size?: unknown } | null)?.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size % SECTOR_SIZE !== 0) {
      throw bad(`thins["${id}"].size`, `is ${JSON.stringify(size)}; it must be the device's size in bytes, a positive multiple of 512`);
    }
  }
  t.thins = thins as PoolTable['thins'];
  refuseLinkedMembers(dir, t);
  return t;
}

/**
 * Every thin device in the metadata has its size in the table (the size is written
 * before the device is committed, so only an edited or damaged pool.json lacks one).
 * Throws E_PARSE naming the device, the field and the file.
 */
export function requireThinSizes(dir: string, t: PoolTable, devices: readonly number[]): void {
  const missing = devices.filter((id) => t.thins[id] === undefined);
  if (missing.length === 0) return;
  const file = path.join(dir, TABLE_FILE);
  throw new ThinError('E_PARSE', `${file}: thins has no size for thin device${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which the metadata holds; add "${missing[0]}": { "size": BYTES } to thins (or delete the device)`, { file, field: 'thins', devices: missing });
}

export function saveTable(dir: string, t: PoolTable): void {
  // durable.ts: temporary file, fsync, rename, fsync the directory. Without the last
  // step a power cut could bring back the old table after a device's creation committed.
  writeAtomic(path.join(dir, TABLE_FILE), JSON.stringify(t, null, 2) + '\n', 0o600);
}
