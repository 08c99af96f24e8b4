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
 * - Spares: release() of a writable loop attachment that the kernel no longer holds
 *   (see loopReusable) keeps its nbdfuse file and loop device, pointed at no device
 *   (every access fails with EIO), recorded as a spare; the next writable loop
 *   attachment of the same size points it at its device instead of spawning nbdfuse and
 *   losetup (~0.1-0.3 s under load). At most MAX_SPARES, each torn down after
 *   SPARE_IDLE_MS unused and at close(). A dead owner's spares are cleaned like any record.
 * - The NBD servers run in this process. This process never touches a mounted tree
 *   itself: thinsim's own work inside a tree runs in a tree worker (layers/tree.ts), and
 *   containerd or runc are other processes; so nothing waiting on a mount shares the
 *   server's thread pool or event loop.
 * - Without root or loop devices, ext4 mounts through fuse2fs on the nbdfuse file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { removeDurable, sweepInterrupted, writeAtomic } from '../durable';
import { ThinError } from '../errors';
import { UNBOUND } from '../nbd/exports';
import type { Pool } from '../pool/pool';
import { requireTool, runTool, runToolOk } from '../tools';
import { canLoopMount, cleanRecord, loopReusable, ownerAlive, processStart, startWritebackEarly, waitLoopGone, type AttachRecord } from './attach-records';
import { isMounted, mountFilesystem, unmountFilesystem, type Filesystem } from './filesystem';
import { holdersOf } from './holders';
import { startNbdFile, type NbdFile } from './nbd-file';

export { canLoopMount, processStart, type AttachRecord } from './attach-records';

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
  /**
   * Let go of the device: like detach(), except that a writable loop device the kernel
   * no longer holds may be kept as a spare for this host's next attachment of the same
   * size (no new nbdfuse or loop device then). Idempotent, shared with detach().
   */
  release(): Promise<void>;
}

/** The pieces behind an attachment, which outlive it when kept as a spare. */
interface Slot {
  n: number;
  rec: AttachRecord;
  dir: string;
  /** The export's size in bytes (a spare serves only devices of this size). */
  size: number;
  nbd?: NbdFile;
  loop?: string;
  teardown?: Promise<void>;
  idle?: NodeJS.Timeout;
  save(): void;
  /** Tear everything down, in reverse order (idempotent while it succeeds). */
  destroy(): Promise<void>;
}

/** Spares kept per host, and how long one may stay unused before it is torn down. */
const MAX_SPARES = 2;
const SPARE_IDLE_MS = 30_000;

export interface MountedTree {
  path: string;
  /** The nbdfuse file under the filesystem (the device's bytes). */
  file: string;
  device: number;
  readOnly: boolean;
  unmount(): Promise<void>;
}

export class MountHost {
  private seq = 0;
  private readonly live = new Map<number, Attachment>();
  /** How to add facts to an attachment's record. */
  private readonly notes = new WeakMap<Attachment, (f: Partial<AttachRecord>) => void>();
  private readonly pidStart = processStart(process.pid) ?? '';
  /** Writable loop slots serving no device, newest last (release()). */
  private readonly spares: Slot[] = [];
  /** Failures of work done in the background (a spare's idle teardown), reported by close(). */
  private readonly deferred: string[] = [];
  /** Released slots whose open-file check is still running (recycle()). */
  private readonly vetting = new Set<Promise<void>>();
  /** Spares being made in the background (warm()), and how many to keep (keepSpares()). */
  private readonly warming = new Set<Promise<void>>();
  /** Spares being torn down (dropSpare()). */
  private readonly dropping = new Set<Promise<void>>();
  private wanted = 0;
  private closing = false;

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
    const lines: string[] = sweepInterrupted(this.runDir).map((f) => `${f}: an interrupted write's temporary file`);
    for (const { file, rec } of this.records()) {
      if (ownerAlive(rec)) continue;
      const done = await cleanRecord(rec);
      removeDurable(file);
      lines.push(`${rec.spare ? 'a spare loop device' : `thin device ${rec.device}`}, left by pid ${rec.pid}: ${done.length ? done.join(', ') : 'nothing was left attached'}`);
    }
    return lines;
  }

  /** The loop devices of the spares ready now (release(), keepSpares()). */
  spareLoops(): string[] {
    return this.spares.map((s) => s.loop!).filter(Boolean);
  }

  /** Resolves when no spare is being checked or made in the background. */
  async settled(): Promise<void> {
    while (this.vetting.size || this.warming.size) await Promise.all([...this.vetting, ...this.warming]);
  }

  /** Attachments this host holds now. */
  attachments(): Attachment[] {
    return [...this.live.values()];
  }

  /**
   * Device `id` as a file (nbdfuse) and, with `loop`, as a loop device (read-only at the
   * loop for read-only attachments). A writable loop attachment takes a spare of the
   * device's size when there is one (see release()).
   */
  async attach(id: number, opts: { readOnly: boolean; loop?: boolean; name?: string }): Promise<Attachment> {
    if (opts.loop && !opts.readOnly) {
      const size = this.pool.deviceSize(id);
      const i = this.spares.findIndex((s) => s.size === size);
      if (i >= 0) {
        const [slot] = this.spares.splice(i, 1);
        clearTimeout(slot.idle);
        slot.rec.device = id;
        delete slot.rec.spare;
        slot.save();
        slot.nbd!.retarget(id);
        this.warm(size);
        return this.bind(slot, id);
      }
    }
    const slot = await this.makeSlot(id, opts);
    if (opts.loop && !opts.readOnly) this.warm(slot.size);
    return this.bind(slot, id);
  }

  /**
   * Keep `count` spares ready (default 0): after each writable loop attachment, one of its
   * size is made in the background when fewer are ready or on their way. For a service
   * that attaches devices all along (the containerd snapshotter), so its next attachment
   * finds one even when no device was let go in between.
   */
  keepSpares(count: number): void {
    this.wanted = Math.min(count, MAX_SPARES);
  }

  private warm(size: number): void {
    if (this.closing || this.spares.length + this.vetting.size + this.warming.size >= this.wanted) return;
    const job = (async () => {
      let slot: Slot | undefined;
      try {
        slot = await this.makeSlot(UNBOUND, { readOnly: false, loop: true, name: 'spare', size });
      } catch (e) {
        this.deferred.push(`making a spare loop device: ${(e as Error).message}`);
        return;
      }
      this.shelve(slot);
      if (this.closing) await this.dropSpare(slot);
    })().finally(() => this.warming.delete(job));
    this.warming.add(job);
  }

  /** A new slot serving device `id`: NBD export, nbdfuse file and (with `loop`) loop device, each recorded first. */
  private async makeSlot(id: number, opts: { readOnly: boolean; loop?: boolean; name?: string; size?: number }): Promise<Slot> {
    fs.mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    const n = ++this.seq;
    const recFile = path.join(this.runDir, `${process.pid}.${n}.json`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-dev-'));
    const rec: AttachRecord = { pid: process.pid, pidStart: this.pidStart, device: id, readOnly: opts.readOnly, dir, ...(id === UNBOUND ? { spare: true } : {}) };
    const slot: Slot = {
      n, rec, dir, size: id === UNBOUND ? opts.size! : this.pool.deviceSize(id),
      save: () => writeAtomic(recFile, JSON.stringify(rec) + '\n'),
      destroy: () => {
        slot.teardown ??= (async () => {
          if (slot.loop) {
            // A loop device still held by a filesystem (a lazy unmount) is only marked for
            // autoclear: wait until the kernel lets go before the server may stop.
            await runTool('losetup', ['-d', slot.loop], 60_000);
            if (!(await waitLoopGone(slot.nbd!.file, 60_000))) {
              slot.teardown = undefined;
              throw new ThinError('E_MOUNTED', `${slot.loop} (thin device ${rec.device}) is still in use after 60 s; something still holds a filesystem on it, so its NBD server keeps serving`, { device: rec.device, loop: slot.loop });
            }
            slot.loop = undefined;
          }
          await slot.nbd?.close();
          for (const d of [path.join(dir, 'mnt'), dir]) {
            try { fs.rmdirSync(d); } catch { /* absent, or not empty: a directory is never emptied here */ }
          }
          removeDurable(recFile);
          this.live.delete(n);
        })();
        return slot.teardown;
      },
    };
    slot.save();
    try {
      slot.nbd = await startNbdFile(this.pool, id, dir, {
        readOnly: opts.readOnly, name: opts.name, ...(id === UNBOUND ? { size: slot.size } : {}),
        onStep: (st) => { Object.assign(rec, st); slot.save(); },
      });
      if (opts.loop) {
        requireTool('losetup', 'attach a thin device as a loop device');
        // --direct-io: the loop device submits its requests to the nbdfuse file as direct,
        // asynchronous I/O, many in flight, instead of one buffered write at a time through a
        // second page cache (measured: 200 MiB written and fsynced in ~1.3 s instead of 2.4-4.5 s).
        slot.loop = (await runToolOk('losetup', ['-f', '--show', '--direct-io=on', ...(opts.readOnly ? ['-r'] : []), slot.nbd.file], `attach thin device ${id} to a loop device`)).trim();
        rec.loop = slot.loop;
        slot.save();
        if (!opts.readOnly) startWritebackEarly(slot.loop);
      }
    } catch (e) {
      await slot.destroy();
      throw e;
    }
    return slot;
  }

  /** The attachment of `slot` to device `id`: one per binding; once released or detached it does nothing more. */
  private bind(slot: Slot, id: number): Attachment {
    let ended: Promise<void> | undefined;
    const a: Attachment = {
      device: id, readOnly: slot.rec.readOnly, file: slot.nbd!.file, dir: slot.dir,
      get loop() { return slot.loop; },
      detach: () => (ended ??= slot.destroy().catch((e) => { ended = undefined; throw e; })),
      release: () => (ended ??= this.recycle(slot).then((kept) => (kept ? undefined : slot.destroy())).catch((e) => { ended = undefined; throw e; })),
    };
    this.live.set(slot.n, a);
    this.notes.set(a, (f) => { Object.assign(slot.rec, f); slot.save(); });
    return a;
  }

  /**
   * Keep a released writable loop slot as a spare, pointed at no device, when the kernel
   * holds nothing of it: no mount, no holder in /sys, direct I/O on (so no page cache of
   * the old device's bytes sits under the loop), room among the spares, and (checked
   * after the caller goes on, since reading every process's open files takes tens of ms)
   * no process with the loop device open. Returns whether it was kept.
   */
  private async recycle(slot: Slot): Promise<boolean> {
    const loop = slot.loop;
    if (!loop || slot.rec.readOnly || this.closing || this.spares.length + this.vetting.size >= MAX_SPARES || slot.teardown) return false;
    if (!loopReusable(loop, slot.nbd!.file)) return false;
    // From here on every access through the loop device fails (EIO) until it is pointed again.
    slot.nbd!.retarget(undefined);
    try { fs.rmdirSync(path.join(slot.dir, 'mnt')); } catch { /* absent, or not empty: a directory is never emptied here */ }
    delete slot.rec.mnt;
    slot.rec.spare = true;
    slot.save();
    this.live.delete(slot.n);
    const vet = (async () => {
      await new Promise((r) => setImmediate(r));
      if (this.closing || holdersOf(loop).length) {
        void this.dropSpare(slot); // waits for the holder to let go; close() waits for it
        return;
      }
      this.shelve(slot);
    })().finally(() => this.vetting.delete(vet));
    this.vetting.add(vet);
    return true;
  }

  /** Keep `slot` among the spares, torn down after SPARE_IDLE_MS unused. */
  private shelve(slot: Slot): void {
    slot.idle = setTimeout(() => { void this.dropSpare(slot); }, SPARE_IDLE_MS);
    slot.idle.unref();
    this.spares.push(slot);
  }

  /** Tear down a spare; a failure is kept and reported by close(), which also waits for it. */
  private dropSpare(slot: Slot): Promise<void> {
    const i = this.spares.indexOf(slot);
    if (i >= 0) this.spares.splice(i, 1);
    clearTimeout(slot.idle);
    const loop = slot.loop;
    const job = slot.destroy().catch((e: Error) => {
      this.deferred.push(`spare ${loop ?? 'loop device'}: ${e.message}`);
    }).finally(() => this.dropping.delete(job));
    this.dropping.add(job);
    return job;
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
        await a.release();
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
    this.closing = true;
    await Promise.all([...this.vetting, ...this.warming]);
    for (const slot of [...this.spares].reverse()) void this.dropSpare(slot);
    await Promise.all(this.dropping);
    const errors: string[] = this.deferred.splice(0);
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
