/**
 * MountHost: the one owner of "a thin device as a block device" for one pool in one
 * process: the NBD export, the nbdfuse file, the loop device and the mounted filesystem.
 *
 * Contract:
 * - Every attachment is recorded in POOL/run/<pid>.<n>.json (written atomically) before
 *   each piece it names exists, and removed after the last piece is gone; so a process
 *   killed at any point leaves a record of everything it made.
 * - open() first cleans up after dead owners (pid gone, or reused: the start time differs):
 *   their mounts are unmounted (lazily when busy), their loop devices detached, their
 *   nbdfuse unmounted and killed, their sockets and directories removed. What it cleaned
 *   is returned, one line each.
 * - Teardown runs in reverse order: unmount, detach the loop device and wait until the
 *   kernel has let go of it, unmount nbdfuse, stop the NBD server. A mount that stays busy
 *   is an E_MOUNTED error naming its holders and stays mounted and served; no step after
 *   a failed one runs, so the server never stops under a filesystem that may hold dirty
 *   pages. close() tears down every attachment, newest first, and reports all failures.
 * - The NBD servers run in this process. This process never touches a mounted tree
 *   itself: thinsim's own work inside a tree runs in a tree worker (layers/tree.ts), and
 *   containerd or runc are other processes; so nothing waiting on a mount shares the
 *   server's thread pool or event loop.
 * - Without root or loop devices, ext4 mounts through fuse2fs on the nbdfuse file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeAtomic, removeDurable } from '../durable';
import { ThinError } from '../errors';
import type { Pool } from '../pool/pool';
import { findTool, requireTool, runTool, runToolOk } from '../tools';
import { isMounted, mountFilesystem, unmountFilesystem, type Filesystem } from './filesystem';
import { startNbdFile, type NbdFile } from './nbd-file';
import { loopsBackedBy, mountsUnder } from './table';

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
}

export interface Attachment {
  /** The thin device id. */
  device: number;
  readOnly: boolean;
  /** The nbdfuse file with the device's bytes. */
  file: string;
  /** /dev/loopN, when attached as a block device. */
  loop?: string;
  /** The private directory of this attachment. */
  dir: string;
  /** Undo everything this attachment made (idempotent; concurrent calls share one teardown). */
  detach(): Promise<void>;
}

export interface MountedTree {
  path: string;
  /** The nbdfuse file under the filesystem (the device's bytes). */
  file: string;
  device: number;
  readOnly: boolean;
  unmount(): Promise<void>;
}

export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined; // no such process
  }
}

function ownerAlive(r: AttachRecord): boolean {
  return processStart(r.pid) === r.pidStart;
}

export function canLoopMount(): boolean {
  return process.getuid?.() === 0 && fs.existsSync('/dev/loop-control') && findTool('losetup') !== undefined && findTool('mount') !== undefined;
}

/** Wait until no loop device is backed by `file` any more (the kernel has let go of it). */
async function waitLoopGone(file: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (loopsBackedBy(file).length) {
    if (Date.now() >= end) return false;
    await sleep(100);
  }
  return true;
}

/**
 * Dirty pages of a filesystem on `loop` start going to the device once 32 MiB are dirty
 * (the BDI's max_bytes with strict_limit, Linux 6.2+), instead of at 10 % of memory: the
 * writeback through nbdfuse then runs beside the writer rather than all at unmount. A
 * tuning only: where the kernel lacks these knobs, nothing changes but the timing.
 */
function startWritebackEarly(loop: string): void {
  const m = /^\/dev\/loop(\d+)$/.exec(loop);
  if (!m) return;
  const bdi = `/sys/class/bdi/7:${m[1]}`;
  try {
    fs.writeFileSync(`${bdi}/max_bytes`, String(32 * 2 ** 20));
    fs.writeFileSync(`${bdi}/strict_limit`, '1');
  } catch { /* older kernel or no sysfs: the default writeback thresholds apply (see above) */ }
}

/** Undo what a dead owner left, as far as it goes; returns one line per thing done. */
async function cleanRecord(r: AttachRecord): Promise<string[]> {
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

export class MountHost {
  private seq = 0;
  private readonly live = new Map<number, Attachment>();
  /** How to add facts to an attachment's record. */
  private readonly notes = new WeakMap<Attachment, (f: Partial<AttachRecord>) => void>();
  private readonly pidStart = processStart(process.pid) ?? '';

  private constructor(readonly pool: Pool, readonly runDir: string) {}

  /** The host for `pool`, after cleaning up what dead processes left in POOL/run. */
  static async open(pool: Pool): Promise<{ host: MountHost; cleaned: string[] }> {
    const host = new MountHost(pool, path.join(pool.dir, 'run'));
    const cleaned = await host.cleanStale();
    return { host, cleaned };
  }

  private records(): Array<{ file: string; rec: AttachRecord }> {
    let names: string[];
    try { names = fs.readdirSync(this.runDir); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new ThinError('E_IO', `cannot read ${this.runDir}: ${(e as Error).message}`, { file: this.runDir });
    }
    const out: Array<{ file: string; rec: AttachRecord }> = [];
    for (const n of names.filter((x) => /^\d+\.\d+\.json$/.test(x))) {
      const file = path.join(this.runDir, n);
      try {
        out.push({ file, rec: JSON.parse(fs.readFileSync(file, 'utf8')) as AttachRecord });
      } catch (e) {
        throw new ThinError('E_CORRUPT', `the mount record ${file} is unreadable (${(e as Error).message}); look at what it names, clean up by hand, and remove it`, { file });
      }
    }
    return out;
  }

  /** Clean up after every dead owner's attachments. */
  async cleanStale(): Promise<string[]> {
    const lines: string[] = [];
    for (const { file, rec } of this.records()) {
      if (ownerAlive(rec)) continue;
      const done = await cleanRecord(rec);
      removeDurable(file);
      lines.push(`thin device ${rec.device}, left by pid ${rec.pid}: ${done.length ? done.join(', ') : 'nothing was left attached'}`);
    }
    return lines;
  }

  /** Attachments this host holds now. */
  attachments(): Attachment[] {
    return [...this.live.values()];
  }

  /**
   * Device `id` as a file (nbdfuse) and, with `loop`, as a loop device (read-only at the
   * loop for read-only attachments).
   */
  async attach(id: number, opts: { readOnly: boolean; loop?: boolean; name?: string }): Promise<Attachment> {
    fs.mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    const n = ++this.seq;
    const recFile = path.join(this.runDir, `${process.pid}.${n}.json`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-dev-'));
    const rec: AttachRecord = { pid: process.pid, pidStart: this.pidStart, device: id, readOnly: opts.readOnly, dir };
    const save = () => writeAtomic(recFile, JSON.stringify(rec) + '\n');
    save();
    let nbd: NbdFile | undefined;
    let loop: string | undefined;
    let teardown: Promise<void> | undefined;
    const detach = () => {
      teardown ??= (async () => {
        if (loop) {
          // A loop device still held by a filesystem (a lazy unmount) is only marked for
          // autoclear: wait until the kernel lets go before the server may stop.
          await runTool('losetup', ['-d', loop], 60_000);
          if (!(await waitLoopGone(nbd!.file, 60_000))) {
            teardown = undefined;
            throw new ThinError('E_MOUNTED', `${loop} (thin device ${id}) is still in use after 60 s; something still holds a filesystem on it, so its NBD server keeps serving`, { device: id, loop });
          }
          loop = undefined;
        }
        await nbd?.close();
        for (const d of [path.join(dir, 'mnt'), dir]) {
          try { fs.rmdirSync(d); } catch { /* absent, or not empty: a directory is never emptied here */ }
        }
        removeDurable(recFile);
        this.live.delete(n);
      })();
      return teardown;
    };
    try {
      nbd = await startNbdFile(this.pool, id, dir, {
        readOnly: opts.readOnly, name: opts.name,
        onStep: (s) => { Object.assign(rec, s); save(); },
      });
      if (opts.loop) {
        requireTool('losetup', 'attach a thin device as a loop device');
        loop = (await runToolOk('losetup', ['-f', '--show', ...(opts.readOnly ? ['-r'] : []), nbd.file], `attach thin device ${id} to a loop device`)).trim();
        rec.loop = loop;
        save();
        if (!opts.readOnly) startWritebackEarly(loop);
      }
    } catch (e) {
      await detach();
      throw e;
    }
    const a: Attachment = {
      device: id, readOnly: opts.readOnly, file: nbd.file, dir, detach,
      get loop() { return loop; },
    };
    this.live.set(n, a);
    this.notes.set(a, (f) => { Object.assign(rec, f); save(); });
    return a;
  }

  /** Mount the filesystem on device `id` at a fresh directory; unmount() undoes it all. */
  async mount(id: number, type: Filesystem, opts: { readOnly: boolean }): Promise<MountedTree> {
    if (type === 'none') throw new ThinError('E_INVALID', `thin device ${id} has no filesystem (the base device was created with filesystem "none"); read it as blocks instead`);
    const loop = canLoopMount();
    if (!loop) {
      if (type !== 'ext4') throw new ThinError('E_UNSUPPORTED', `mounting ${type} needs root and loop devices (only ext4 mounts through fuse2fs)`);
      requireTool('fuse2fs', 'mount a layer without root');
    }
    const a = await this.attach(id, { readOnly: opts.readOnly, loop });
    const mnt = path.join(a.dir, 'mnt');
    let mounted = false;
    let done: Promise<void> | undefined;
    const unmount = () => {
      done ??= (async () => {
        if (mounted) {
          await unmountFilesystem(mnt, { fuse: !loop }).catch((e) => { done = undefined; throw e; });
          mounted = false;
        }
        await a.detach();
      })();
      return done;
    };
    try {
      fs.mkdirSync(mnt);
      this.notes.get(a)!({ mnt });
      if (loop) {
        await mountFilesystem(a.loop!, mnt, type, opts.readOnly, `mount thin device ${id}`);
      } else {
        await runToolOk(requireTool('fuse2fs', 'mount a layer without root'), [a.file, mnt, '-o', opts.readOnly ? 'ro' : 'fakeroot'], `fuse2fs thin device ${id}`);
      }
      mounted = true;
      return { path: mnt, file: a.file, device: id, readOnly: opts.readOnly, unmount };
    } catch (e) {
      await unmount();
      throw e;
    }
  }

  /**
   * Tear down every attachment, newest first. A mount still busy after unmount's retries
   * is detached lazily (umount -l) and its loop device given up for autoclear; its NBD
   * server keeps serving until the kernel lets go of the device (the holders exit), for
   * up to 60 s. Every failure is reported together, naming the holders.
   */
  async close(): Promise<void> {
    const errors: string[] = [];
    for (const a of [...this.live.values()].reverse()) {
      const mnt = path.join(a.dir, 'mnt');
      try {
        if (isMounted(mnt)) {
          try {
            await unmountFilesystem(mnt, { fuse: !a.loop });
          } catch (e) {
            if (!(e instanceof ThinError && e.code === 'E_MOUNTED') || !a.loop) throw e;
            await runToolOk('umount', ['-l', mnt], `lazily unmount ${mnt}`);
            errors.push(`${e.message.replace(/ \(the layer stays mounted and served\)$/, '')}; detached lazily`);
          }
        }
        await a.detach();
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length) throw new ThinError('E_MOUNTED', `tearing down the mounts of ${this.pool.dir}: ${errors.join('; ')}`, { errors });
  }
}
