/**
 * Durable small files: written whole or not at all, and removed for good, across a crash.
 * Usable from every layer (Docker's records, the mount records, pool.json).
 *
 * Contract: writeAtomic writes a temporary file beside the target, fsyncs it, renames it
 * over the target and fsyncs the directory; a crash leaves the old or the new content,
 * never a mix. The new file gets exactly `mode` (default 0600: everything thinsim writes
 * into a pool is private to its owner), set with fchmod so no umask widens or narrows it,
 * on every rewrite too (the rename carries the temporary file's mode). removeDurable
 * removes (absent is fine) and fsyncs the directory. Failures are E_IO errors naming the
 * file. writeDirAtomic builds a directory beside its name (`NAME.tmp-PID`) and renames
 * it into place, so readers see it whole or not at all. sweepInterrupted removes what a
 * killed process's writeAtomic (`.tmp-PID-HEX`), writeDirAtomic (`NAME.tmp-PID`) or
 * removeDurable (`NAME.rm-PID-HEX`) left behind, once that PID is no longer alive;
 * nothing else.
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

/** Temporary file (mode `mode`), fsync, rename over `file`, fsync the directory. */
export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  try {
    // 'wx': a fresh file of our own, never one planted under the temporary name.
    const fd = fs.openSync(tmp, 'wx', mode);
    try {
      fs.fchmodSync(fd, mode);
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

/**
 * Make directory `dir` whole or not at all: `fill` writes its files into an empty
 * temporary directory beside it (`NAME.tmp-PID`, mode 0700; a leftover of this pid is
 * removed first), which is then renamed over the name and the parent fsynced. `dir` must
 * not exist yet (rename(2) does not replace a non-empty directory).
 */
export function writeDirAtomic(dir: string, fill: (tmp: string) => void): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  removeDurable(tmp);
  fs.mkdirSync(tmp, { mode: 0o700 });
  fill(tmp);
  try {
    fs.renameSync(tmp, dir);
    fsyncDir(path.dirname(dir));
  } catch (e) {
    throw ioError('rename into place', dir, e);
  }
}

/**
 * Remove `file` (absent is fine) and fsync its directory. A directory goes at once: it is
 * renamed aside (`NAME.rm-PID-RANDOM`, durable) and only then emptied, so a crash never
 * leaves it half removed under its own name; a crash mid-way leaves the aside copy, which
 * no reader looks at.
 */
export function removeDurable(file: string): void {
  try {
    let st: fs.Stats | undefined;
    try { st = fs.lstatSync(file); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
    if (st?.isDirectory()) {
      const aside = `${file}.rm-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
      fs.renameSync(file, aside);
      fsyncDir(path.dirname(file));
      fs.rmSync(aside, { force: true, recursive: true });
    } else if (st) {
      fs.rmSync(file, { force: true });
    }
    fsyncDir(path.dirname(file));
  } catch (e) {
    throw ioError('remove', file, e);
  }
}


/** The names temporary work of process PID takes: writeAtomic's, writeDirAtomic's, removeDurable's. */
const INTERRUPTED = [/^\.tmp-(\d+)-[0-9a-f]{8}$/, /^.+\.tmp-(\d+)$/, /^.+\.rm-(\d+)-[0-9a-f]{8}$/];

/** True unless `pid` is certainly gone (kill(pid, 0) says ESRCH). */
function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Remove the temporary files and directories that processes no longer alive left in `dir`
 * (and, with `recursive`, below it) when they were killed mid-write; returns their paths.
 * A PID that is alive again (reused) keeps its leftovers until it is gone: they are never
 * read as records, so waiting costs only their space. A missing `dir` has none.
 */
export function sweepInterrupted(dir: string, opts: { recursive?: boolean } = {}): string[] {
  const out: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw ioError('list', dir, e);
  }
  let removed = false;
  for (const d of entries) {
    const full = path.join(dir, d.name);
    const m = INTERRUPTED.map((re) => re.exec(d.name)).find((x) => x);
    if (m && !alive(Number(m[1]))) {
      try {
        fs.rmSync(full, { recursive: true, force: true });
      } catch (e) {
        throw ioError('remove the leftover of an interrupted write', full, e);
      }
      out.push(full);
      removed = true;
    } else if (opts.recursive && d.isDirectory()) {
      out.push(...sweepInterrupted(full, opts));
    }
  }
  if (removed) fsyncDir(dir);
  return out;
}
