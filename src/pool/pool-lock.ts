/**
 * Exclusive pool lock: one read-write opener at a time, across processes.
 *
 * Contract: `acquire` creates `<dir>/pool.lock` atomically (link(2) of a file
 * holding our pid, which fails if the lock exists). A lock whose pid is no longer
 * alive (a writer killed with -9) is stale and is taken over. A live holder gives
 * E_POOL_BUSY naming its pid. Read-only opens never take the lock.
 *
 * Every writer takes it: the pool's read-write open, and the offline tools that write
 * metadata (restore). A writer handed a bare metadata file finds the pool it belongs
 * to with `poolOfMetadata` (a pool.json beside it that names it) and takes that pool's
 * lock; `openedBy` names other processes that hold the file open, for metadata whose
 * pool directory lives elsewhere (a direct-lvm pool's block device).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ioError, ThinError } from '../errors';
import { loadTable, resolveDev, TABLE_FILE } from './table';

export class PoolLock {
  private constructor(readonly file: string) {}

  static acquire(dir: string): PoolLock {
    const file = path.join(dir, 'pool.lock');
    const tmp = `${file}.${process.pid}.${Date.now()}`;
    fs.writeFileSync(tmp, `${process.pid}\n`);
    try {
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          fs.linkSync(tmp, file);
          return new PoolLock(file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('lock', file, e);
        }
        const holder = readPid(file);
        if (holder !== undefined && holder !== process.pid && alive(holder)) {
          throw new ThinError('E_POOL_BUSY', `pool ${dir} is busy (held by pid ${holder}); read-only commands (status, check, dump, ls) still work`, { pid: holder, file });
        }
        if (holder === process.pid) {
          throw new ThinError('E_POOL_BUSY', `pool ${dir} is already open read-write in this process (pid ${holder})`, { pid: holder, file });
        }
        // Stale: the holder died. Take it over under a takeover mutex (an atomic mkdir),
        // re-checking the pid inside it, so two processes never both remove a lock and
        // nobody removes a lock that a live process has just taken.
        takeOverStale(file, holder);
      }
      throw new ThinError('E_POOL_BUSY', `pool ${dir} lock keeps changing hands; try again`, { file });
    } finally {
      try { fs.unlinkSync(tmp); } catch { /* ignore */ }
    }
  }

  release(): void {
    try {
      if (readPid(this.file) === process.pid) fs.unlinkSync(this.file);
    } catch { /* already gone */ }
  }

  /** The pid holding `dir`'s lock, if a live process holds it. */
  static holder(dir: string): number | undefined {
    const pid = readPid(path.join(dir, 'pool.lock'));
    return pid !== undefined && alive(pid) ? pid : undefined;
  }
}

/**
 * The pool directory whose metadata device is `file`: the directory holding `file`,
 * when its pool.json names the same file (same device and inode). undefined otherwise.
 */
export function poolOfMetadata(file: string): string | undefined {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(path.join(dir, TABLE_FILE))) return undefined;
  try {
    const mine = fs.statSync(file);
    const theirs = fs.statSync(resolveDev(dir, loadTable(dir).metadataDev));
    return mine.dev === theirs.dev && mine.ino === theirs.ino ? dir : undefined;
  } catch {
    // A pool.json that cannot be read, or names a device that is gone, does not own `file`;
    // openedBy() still catches a live process that has it open.
    return undefined;
  }
}

/**
 * Other processes that hold `file` open (Linux /proc/PID/fd), by pid. Processes whose
 * descriptors we may not read are not seen: the pool lock is the rule, this a backstop.
 */
export function openedBy(file: string): number[] {
  let target: fs.Stats;
  try { target = fs.statSync(file); } catch { return []; }
  const pids: number[] = [];
  let procs: string[];
  try { procs = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid); } catch { return []; }
  for (const pid of procs) {
    let fds: string[];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { continue; } // exited, or not ours to read
    for (const fd of fds) {
      try {
        const st = fs.statSync(`/proc/${pid}/fd/${fd}`);
        if (st.dev === target.dev && st.ino === target.ino) { pids.push(Number(pid)); break; }
      } catch { /* closed meanwhile */ }
    }
  }
  return pids;
}

function takeOverStale(file: string, deadPid: number | undefined): void {
  const mutex = `${file}.takeover`;
  try {
    fs.mkdirSync(mutex);
  } catch {
    // Someone else is taking it over; a mutex left by a process killed mid-takeover expires.
    try {
      if (Date.now() - fs.statSync(mutex).mtimeMs > 5000) fs.rmdirSync(mutex);
    } catch { /* gone already */ }
    sleep(5);
    return;
  }
  try {
    // Only a lock that still names the dead pid is removed. A lock that vanished (or
    // cannot be read) is left alone: removing "nothing" could remove a lock linked by a
    // live process a moment later.
    const now = readPid(file);
    if (now !== undefined && now === deadPid && !alive(now)) {
      try { fs.unlinkSync(file); } catch { /* already gone */ }
    }
  } finally {
    try { fs.rmdirSync(mutex); } catch { /* ignore */ }
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
