/**
 * Argument checks every verb shares: thin device ids, whole numbers, and the files a
 * verb reads or writes, each refused with a message that names the argument, what
 * was wrong and what to give instead.
 *
 * Contract: each function returns the checked value or throws a ThinError: E_INVALID
 * for a value of the wrong kind (not a number, fractional, negative, a directory where
 * a file belongs), E_RANGE for a whole number beyond its limit, E_NOT_FOUND for a file
 * or directory that does not exist. Nothing here opens a pool.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ioError, ThinError } from '../errors';

/** dm-thin device ids are 24 bits (the kernel's and thin_restore's limit). */
export const MAX_THIN_ID = 2 ** 24 - 1;

/**
 * A whole number given on the command line (yargs may hand over a number or a string).
 * `what` names the argument as the user typed it, e.g. "thin device id" or "--layers".
 */
export function wholeNumber(v: unknown, what: string, limits: { min?: number; max?: number } = {}): number {
  const min = limits.min ?? 0;
  const max = limits.max ?? Number.MAX_SAFE_INTEGER;
  const text = String(v).trim();
  if (v === undefined || v === null || text === '' || typeof v === 'boolean') {
    throw new ThinError('E_INVALID', `${what} needs a value: give a whole number from ${min} to ${max}`, { value: v });
  }
  const n = typeof v === 'number' ? v : /^[-+]?\d+(\.\d*)?$/.test(text) ? Number(text) : NaN;
  if (Number.isNaN(n)) throw new ThinError('E_INVALID', `${what} "${text}" is not a number: give a whole number from ${min} to ${max}`, { value: v });
  if (!Number.isInteger(n)) throw new ThinError('E_INVALID', `${what} ${text} is not a whole number: give a whole number from ${min} to ${max}`, { value: v });
  if (n < 0 && min >= 0) throw new ThinError('E_INVALID', `${what} ${text} is negative: give a whole number from ${min} to ${max}`, { value: v });
  if (n < min || n > max) throw new ThinError('E_RANGE', `${what} ${text} is out of range: give a whole number from ${min} to ${max}`, { value: v });
  return n;
}

/** A thin device id: a whole number from 0 to 2^24-1. */
export function thinId(v: unknown, what = 'thin device id'): number {
  return wholeNumber(v, what, { min: 0, max: MAX_THIN_ID });
}

/**
 * A file the verb will create or overwrite: refuse a directory and a missing parent
 * directory up front, by name. Returns the path.
 */
export function outputFile(file: string, what: string): string {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(file); } catch { /* absent: the usual case; the parent is checked below */ }
  if (st?.isDirectory()) {
    throw new ThinError('E_INVALID', `${what} ${file} is a directory: give the path of a file to write`, { file });
  }
  if (!st) {
    const dir = path.dirname(path.resolve(file));
    let d: fs.Stats | undefined;
    try { d = fs.statSync(dir); } catch { /* reported just below */ }
    if (!d) throw new ThinError('E_NOT_FOUND', `${what} ${file}: directory ${dir} does not exist; create it first or give another path`, { file });
    if (!d.isDirectory()) throw new ThinError('E_INVALID', `${what} ${file}: ${dir} is not a directory`, { file });
  }
  return file;
}

/** Open `file` for writing (after outputFile's checks); OS errors name the file. */
export function openOutput(file: string, what: string): number {
  outputFile(file, what);
  try {
    return fs.openSync(file, 'w');
  } catch (e) {
    throw ioError(`write ${what}`, file, e);
  }
}

/** A file the verb reads whole: it must exist and be a file or a block device, not a directory. */
export function inputFile(file: string, what: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ThinError('E_NOT_FOUND', `${what} ${file} does not exist`, { file });
    throw ioError(`read ${what}`, file, e);
  }
  if (st.isDirectory()) throw new ThinError('E_INVALID', `${what} ${file} is a directory: give a file`, { file });
  return file;
}

/** The directory a unix socket will be created in must exist (bind(2) would say EACCES or ENOENT). */
export function socketPath(file: string): string {
  const dir = path.dirname(path.resolve(file));
  let st: fs.Stats | undefined;
  try { st = fs.statSync(dir); } catch { /* reported just below */ }
  if (!st) throw new ThinError('E_NOT_FOUND', `--socket ${file}: directory ${dir} does not exist; create it first (mkdir -p ${dir})`, { file });
  if (!st.isDirectory()) throw new ThinError('E_INVALID', `--socket ${file}: ${dir} is not a directory`, { file });
  let own: fs.Stats | undefined;
  try { own = fs.statSync(file); } catch { /* absent: the usual case */ }
  if (own?.isDirectory()) throw new ThinError('E_INVALID', `--socket ${file} is a directory: give the path of a socket to create`, { file });
  return file;
}
