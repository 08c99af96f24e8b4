/**
 * Exclusive pool lock: one read-write opener at a time, across processes.
 *
 * Contract: `acquire` creates `<dir>/pool.lock` (mode 0600) atomically (link(2) of a
 * file holding "PID STARTTIME", STARTTIME being field 22 of /proc/PID/stat, which fails
 * if the lock exists). A lock is stale, and is taken over, when its pid is not alive (a
 * writer killed with -9) or is alive with another start time (the pid was reused by a
 * later process); a lock holding a pid alone (older thinsim) is judged by the pid. The
 * takeover is serialised by an atomic mkdir and re-reads the lock inside it, so of any
 * number of processes racing to open one pool exactly one becomes the writer. A live
 * holder gives E_POOL_BUSY naming its pid. Read-only opens never take the lock.
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
    const me: Holder = { pid: process.pid, start: processStart(process.pid) };
    fs.writeFileSync(tmp, `${me.pid}${me.start === undefined ? '' : ` ${me.start}`}\n`, { mode: 0o600 });
    try {
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          fs.linkSync(tmp, file);
          return new PoolLock(file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('lock', file, e);
        }
        const holder = readHolder(file);
        if (holder !== undefined && live(holder)) {
          if (holder.pid === process.pid) {
            throw new ThinError('E_POOL_BUSY', `pool ${dir} is already open read-write in this process (pid ${holder.pid})`, { pid: holder.pid, file });
          }
          throw busy(dir, holder.pid, file);
        }
        // Stale: the holder died, or its pid now belongs to another process. Take it over
        // under a takeover mutex (an atomic mkdir), re-checking the lock inside it, so two
        // processes never both remove a lock and nobody removes a lock that a live process
        // has just taken.
        takeOverStale(file, holder);
      }
      throw new ThinError('E_POOL_BUSY', `pool ${dir} lock keeps changing hands; try again`, { file });
    } finally {
      try { fs.unlinkSync(tmp); } catch { /* ignore */ }
    }
  }

  release(): void {
    try {
      if (readHolder(this.file)?.pid === process.pid) fs.unlinkSync(this.file);
    } catch { /* already gone */ }
  }

  /** The pid holding `dir`'s lock, if a live process holds it (the same process: same start time). */
  static holder(dir: string): number | undefined {
    const h = readHolder(path.join(dir, 'pool.lock'));
    return h !== undefined && live(h) ? h.pid : undefined;
  }

  /**
   * Fail with acquire's E_POOL_BUSY when a live process holds `dir`'s lock now, without
   * taking it (a check before slow work; acquire still decides).
   */
  static refuseIfHeld(dir: string): void {
    const pid = PoolLock.holder(dir);
    if (pid !== undefined) throw busy(dir, pid, path.join(dir, 'pool.lock'));
  }
}

function busy(dir: string, pid: number, file: string): ThinError {
  return new ThinError('E_POOL_BUSY', `pool ${dir} is busy (held by pid ${pid}); read-only commands (status, check, dump, ls) still work`, { pid, file });
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

function takeOverStale(file: string, stale: Holder | undefined): void {
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
    // Only a lock that still names the stale holder (pid and start time) is removed. A
    // lock that vanished (or cannot be read) is left alone: removing "nothing" could
    // remove a lock linked by a live process a moment later.
    const now = readHolder(file);
    if (now !== undefined && stale !== undefined && now.pid === stale.pid && now.start === stale.start && !live(now)) {
      try { fs.unlinkSync(file); } catch { /* already gone */ }
    }
  } finally {
    try { fs.rmdirSync(mutex); } catch { /* ignore */ }
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Who a lock names: a pid and, when the lock recorded it, that process's start time. */
interface Holder {
  pid: number;
  start?: string;
}

function readHolder(file: string): Holder | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const [p, start] = text.trim().split(/\s+/);
  const pid = Number(p);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, start: start !== undefined && /^\d+$/.test(start) ? start : undefined };
}

/**
 * The start time of `pid` (field 22 of /proc/PID/stat, clock ticks since boot), or
 * undefined when there is no such process (or no /proc). Fields are counted after the
 * last ')': the command name in field 2 may hold spaces and parentheses.
 */
export function processStart(pid: number): string | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/**
 * Does the process the lock names still run? Its pid must be alive and, when the lock
 * recorded a start time and /proc shows one, have that same start time (a different
 * one means the pid was reused: the holder is dead).
 */
function live(h: Holder): boolean {
  if (!alive(h.pid)) return false;
  if (h.start === undefined) return true;
  const now = processStart(h.pid);
  return now === undefined ? true : now === h.start;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
