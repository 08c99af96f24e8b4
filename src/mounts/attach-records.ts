/**
 * The records of what an attachment made (POOL/run/<pid>.<n>.json) and the loop-device
 * facts MountHost acts on: cleaning up after a dead owner, waiting for the kernel to let
 * go of a loop device, and whether a loop device may serve another device.
 *
 * Contract: cleanRecord() undoes, as far as it goes, what a dead owner's record names
 * (mount, loop devices, nbdfuse, socket, directories: rmdir only) and says what it did;
 * a directory still mounted after it is an E_MOUNTED error. loopReusable() answers from
 * sysfs and the mount table only (the caller checks processes' open files).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError } from '../errors';
import { findTool, runTool, runToolOk } from '../tools';
import { isMounted } from './filesystem';
import { loopsBackedBy, mountTable, mountsUnder } from './table';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What one attachment made, as recorded for the crash cleanup. */
export interface AttachRecord {
  pid: number;
  /** The owner's start time (field 22 of /proc/PID/stat), to tell a reused pid. */
  pidStart: string;
  device: number;
  readOnly: boolean;
  dir: string;
  socket?: string;
  fuseDir?: string;
  nbdfusePid?: number;
  loop?: string;
  mnt?: string;
  /** A spare: the loop device serves no thin device now (`device` is its last one). */
  spare?: boolean;
}

export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined; // no such process
  }
}

export function ownerAlive(r: AttachRecord): boolean {
  return processStart(r.pid) === r.pidStart;
}

export function canLoopMount(): boolean {
  return process.getuid?.() === 0 && fs.existsSync('/dev/loop-control') && findTool('losetup') !== undefined && findTool('mount') !== undefined;
}

/** Wait until no loop device is backed by `file` any more (the kernel has let go of it). */
export async function waitLoopGone(file: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (let wait = 5; loopsBackedBy(file).length; wait = Math.min(100, wait * 2)) {
    if (Date.now() >= end) return false;
    await sleep(wait);
  }
  return true;
}

/**
 * Dirty pages of a filesystem on `loop` start going to the device once 32 MiB are dirty
 * (the BDI's max_bytes with strict_limit, Linux 6.2+), instead of at 10 % of memory: the
 * writeback through nbdfuse then runs beside the writer rather than all at unmount. A
 * tuning only: where the kernel lacks these knobs, nothing changes but the timing.
 */
export function startWritebackEarly(loop: string): void {
  const m = /^\/dev\/loop(\d+)$/.exec(loop);
  if (!m) return;
  const bdi = `/sys/class/bdi/7:${m[1]}`;
  try {
    fs.writeFileSync(`${bdi}/max_bytes`, String(32 * 2 ** 20));
    fs.writeFileSync(`${bdi}/strict_limit`, '1');
  } catch { /* older kernel or no sysfs: the default writeback thresholds apply (see above) */ }
}

/**
 * Whether loop device `loop` (backed by `file`) may serve another device, as far as sysfs
 * and the mount table tell: not mounted, no holder in /sys, backed by `file`, writable, and
 * direct I/O on. With no mount and (checked by the caller) no process holding it open, the
 * kernel dropped the device's page cache at its last close, and with direct I/O nothing
 * of the old bytes is cached under it either.
 */
export function loopReusable(loop: string, file: string): boolean {
  const m = /^\/dev\/(loop\d+)$/.exec(loop);
  if (!m) return false;
  const sys = `/sys/block/${m[1]}`;
  try {
    if (fs.readFileSync(`${sys}/loop/dio`, 'utf8').trim() !== '1') return false;
    if (fs.readFileSync(`${sys}/ro`, 'utf8').trim() !== '0') return false;
    if (fs.readFileSync(`${sys}/loop/backing_file`, 'utf8').trim() !== file) return false;
    if (fs.readdirSync(`${sys}/holders`).length) return false;
  } catch {
    return false; // sysfs does not say: tear it down rather than guess
  }
  return !mountTable().some((t) => t.source === loop);
}

/** Undo what a dead owner left, as far as it goes; returns one line per thing done. */
export async function cleanRecord(r: AttachRecord): Promise<string[]> {
  const done: string[] = [];
  if (r.mnt && isMounted(r.mnt)) {
    const u = await runTool('umount', [r.mnt], 60_000);
    if (u.status !== 0) await runToolOk('umount', ['-l', r.mnt], `lazily unmount ${r.mnt}`, 60_000);
    done.push(`unmounted ${r.mnt}${u.status !== 0 ? ' (lazily: it was busy)' : ''}`);
  }
  const file = r.fuseDir ? path.join(r.fuseDir, 'nbd') : undefined;
  if (file) {
    for (const loop of loopsBackedBy(file)) {
      await runTool('losetup', ['-d', loop], 60_000);
      done.push(`detached ${loop}`);
    }
  }
  if (r.fuseDir && isMounted(r.fuseDir)) {
    await runTool('fusermount3', ['-uz', r.fuseDir], 60_000);
    done.push(`unmounted nbdfuse at ${r.fuseDir}`);
  }
  if (r.nbdfusePid && processStart(r.nbdfusePid) !== undefined) {
    let comm = '';
    try { comm = fs.readFileSync(`/proc/${r.nbdfusePid}/comm`, 'utf8').trim(); } catch { /* exited meanwhile */ }
    if (comm === 'nbdfuse') { process.kill(r.nbdfusePid, 'SIGKILL'); done.push(`killed nbdfuse (pid ${r.nbdfusePid})`); }
  }
  if (r.socket) fs.rmSync(r.socket, { force: true });
  if (r.fuseDir) fs.rmSync(`${r.fuseDir}.pid`, { force: true });
  for (const d of [r.mnt, r.fuseDir, r.dir]) {
    if (!d || !fs.existsSync(d)) continue;
    if (mountsUnder(d).length) throw new ThinError('E_MOUNTED', `${d} is still mounted after the cleanup of pid ${r.pid}'s attachment; unmount it by hand (umount -l ${d})`, { path: d });
    try { fs.rmdirSync(d); } catch { /* not empty: a directory is never emptied here */ }
  }
  return done;
}

