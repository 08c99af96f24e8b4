/**
 * The pool table (`pool.json`): what the kernel's thin-pool target line holds
 * (devices, data block size, low-water mark, feature flags), plus what LVM or
 * Docker would keep beside it (backend mode, thin device sizes).
 *
 * Contract: `loadTable` validates everything and names the bad field; `saveTable`
 * replaces the file atomically (write a temporary file, fsync, rename), so a crash
 * leaves either the old or the new table.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ioError, ThinError } from '../errors';
import { checkDataBlockSize } from '../units';

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
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
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
  const bad = (field: string, why: string) => new ThinError('E_PARSE', `${file}: ${field} ${why}`, { file, field });
  if (t.version !== 1) throw bad('version', `is ${t.version}; this thinsim reads version 1`);
  if (t.mode !== 'loop-lvm' && t.mode !== 'direct-lvm') throw bad('mode', 'must be "loop-lvm" or "direct-lvm"');
  if (typeof t.dataDev !== 'string' || typeof t.metadataDev !== 'string') throw bad('dataDev/metadataDev', 'must be paths');
  try { checkDataBlockSize(t.dataBlockSize); } catch (e) { throw bad('dataBlockSize', (e as Error).message); }
  if (!Number.isSafeInteger(t.lowWaterMark) || t.lowWaterMark < 0) throw bad('lowWaterMark', 'must be a whole number of blocks');
  t.features = { ...defaultFeatures(), ...(t.features ?? {}) };
  if (!(typeof t.noSpaceTimeout === 'number' && t.noSpaceTimeout >= 0)) t.noSpaceTimeout = 60;
  t.thins = t.thins ?? {};
  return t;
}

export function saveTable(dir: string, t: PoolTable): void {
  const file = path.join(dir, TABLE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'w', 0o644);
    fs.writeSync(fd, JSON.stringify(t, null, 2) + '\n');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    throw ioError('write', file, e);
  }
}
