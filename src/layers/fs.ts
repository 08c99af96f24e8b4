/**
 * Filesystems on thin devices, through the NBD export: make one, mount one, and always
 * unmount.
 *
 * Contract:
 * - A device is seen as a file by serving it from an in-process NBD server on a unix
 *   socket in a private temporary directory and running `nbdfuse DIR/nbd-mnt URI`
 *   (the file DIR/nbd-mnt/nbd). Read-only exports are read-only at the NBD level.
 * - Mounting: as root with loop devices, `mount -o loop FILE MOUNTPOINT` (ext4 or xfs);
 *   otherwise `fuse2fs FILE MOUNTPOINT` (ext4 only). Read-only mounts of ext4 add
 *   `noload` (no journal replay on a frozen layer); xfs always mounts with `nouuid`
 *   (every layer carries the base device's UUID) and read-only with `norecovery`.
 * - Teardown runs in reverse order (umount, fusermount3 -u / kill nbdfuse, NBD server
 *   shutdown, temporary directory) and runs whatever failed before it; a teardown step
 *   that fails is retried lazily (umount -l, fusermount3 -uz, SIGKILL) so nothing is
 *   left mounted.
 * - Every external program runs asynchronously: the NBD server lives in this process,
 *   so blocking the event loop while the kernel waits on it would deadlock. For the
 *   same reason callers must touch a mounted tree with asynchronous fs calls only.
 * - A missing tool is an E_NOT_FOUND error naming the Debian package that provides it.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ThinError } from '../errors';
import { findTool, requireTool, runTool, runToolOk } from '../tools';

export { findTool, requireTool, runTool, runToolOk, TOOL_PACKAGES, type RunResult } from '../tools';
import { NbdServer } from '../nbd/server';
import type { Pool } from '../pool/pool';

export type Filesystem = 'ext4' | 'xfs' | 'none';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A thin device seen as a file through NBD + nbdfuse. */
export interface ExportedFile {
  /** The FUSE file holding the device's bytes. */
  file: string;
  /** The private temporary directory (socket, FUSE mount point, and room for a mount point). */
  dir: string;
  close(): Promise<void>;
}

/** Serve device `id` of `pool` and expose it as a file with nbdfuse; close() undoes it all. */
export async function exportDevice(pool: Pool, id: number, opts: { readOnly: boolean; name?: string }): Promise<ExportedFile> {
  const nbdfuse = requireTool('nbdfuse', 'see a layer as a file');
  const fusermount = requireTool('fusermount3', 'unmount nbdfuse');
  if (!fs.existsSync('/dev/fuse')) throw new ThinError('E_NOT_FOUND', '/dev/fuse is missing: load the fuse module (modprobe fuse) or run with access to /dev/fuse');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-layer-'));
  const fuseDir = path.join(dir, 'nbd-mnt');
  fs.mkdirSync(fuseDir);
  const name = opts.name ?? 'layer';
  let server: NbdServer | undefined;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const close = async () => {
    try {
      if (child && child.exitCode === null && child.signalCode === null) {
        const r = await runTool(fusermount, ['-u', fuseDir], 60_000);
        if (r.status !== 0) await runTool(fusermount, ['-uz', fuseDir], 60_000);
        const timer = setTimeout(() => child?.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
    } finally {
      try {
        await server?.shutdown();
      } finally {
        for (const p of [path.join(dir, 'nbd.sock'), `${fuseDir}.pid`]) fs.rmSync(p, { force: true });
        // rmdir, never a recursive removal: a directory still mounted must not be emptied.
        for (const p of [fuseDir, path.join(dir, 'mnt'), dir]) { try { fs.rmdirSync(p); } catch { /* left for inspection */ } }
      }
    }
  };
  try {
    server = await NbdServer.start(pool, { socket: path.join(dir, 'nbd.sock'), exports: [{ name, id }], readOnly: opts.readOnly });
    const pidfile = `${fuseDir}.pid`;
    const c = spawn(nbdfuse, [...(opts.readOnly ? ['-r'] : []), '-P', pidfile, fuseDir, server.uri(name)], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let err = '';
    c.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    exited = new Promise<void>((r) => c.on('exit', () => r()));
    c.on('error', (e) => { err += String(e); });
    const file = path.join(fuseDir, 'nbd');
    for (let i = 0; ; i++) {
      if (fs.existsSync(pidfile) && fs.existsSync(file)) break;
      if (c.exitCode !== null || c.signalCode !== null) throw new ThinError('E_IO', `nbdfuse exited (${c.exitCode ?? c.signalCode}) before the export appeared: ${err.trim()}`);
      if (i > 600) throw new ThinError('E_IO', `nbdfuse did not expose ${server.uri(name)} within 60 s: ${err.trim()}`);
      await sleep(100);
    }
    return { file, dir, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Docker's mkfs: ext4 with nodiscard and eager inode tables and journal (then tune2fs -c -1 -i 0), or xfs. */
export async function makeFilesystem(file: string, type: Filesystem): Promise<void> {
  if (type === 'ext4') {
    const mkfs = requireTool('mkfs.ext4', 'make the base device\'s filesystem');
    const tune2fs = requireTool('tune2fs', 'tune the base device\'s filesystem');
    let r = await runTool(mkfs, ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', file]);
    // Older e2fsprogs lack lazy_journal_init; Docker retries without it.
    if (r.status !== 0) r = await runTool(mkfs, ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0', file]);
    if (r.status !== 0) throw new ThinError('E_IO', `mkfs.ext4 ${file} exited ${r.status}: ${r.stderr.trim()}`);
    await runToolOk(tune2fs, ['-c', '-1', '-i', '0', file], 'tune2fs');
  } else if (type === 'xfs') {
    const mkfs = requireTool('mkfs.xfs', 'make the base device\'s filesystem');
    await runToolOk(mkfs, ['-q', '-f', file], 'mkfs.xfs');
  } else {
    throw new ThinError('E_INVALID', `cannot make a filesystem of type "${type}"; use ext4 or xfs`);
  }
}

/** The filesystem UUID blkid reads from `file` (Docker's BaseDeviceUUID). */
export async function filesystemUuid(file: string): Promise<string> {
  const blkid = requireTool('blkid', 'read the base device\'s UUID');
  return (await runToolOk(blkid, ['-p', '-s', 'UUID', '-o', 'value', file], 'blkid')).trim();
}

function canLoopMount(): boolean {
  return process.getuid?.() === 0 && fs.existsSync('/dev/loop-control') && findTool('mount') !== undefined;
}

export interface Mounted {
  /** The mounted tree. */
  path: string;
  unmount(): Promise<void>;
}

/**
 * Mount the filesystem on device `id` of `pool` at a fresh directory. unmount() (and any
 * failure on the way up) tears everything down in reverse order.
 */
export async function mountDevice(pool: Pool, id: number, type: Filesystem, opts: { readOnly: boolean }): Promise<Mounted> {
  if (type === 'none') throw new ThinError('E_INVALID', `thin device ${id} has no filesystem (the base device was created with filesystem "none"); read it as blocks instead`);
  const loop = canLoopMount();
  if (!loop) {
    if (type !== 'ext4') throw new ThinError('E_UNSUPPORTED', `mounting ${type} needs root and loop devices (only ext4 mounts through fuse2fs)`);
    requireTool('fuse2fs', 'mount a layer without root');
  }
  const exported = await exportDevice(pool, id, { readOnly: opts.readOnly });
  const mnt = path.join(exported.dir, 'mnt');
  let mounted = false;
  const unmount = async () => {
    try {
      if (mounted) {
        mounted = false;
        if (loop) {
          const r = await runTool('umount', [mnt], 120_000);
          if (r.status !== 0) await runTool('umount', ['-l', mnt], 120_000);
        } else {
          const r = await runTool('fusermount3', ['-u', mnt], 120_000);
          if (r.status !== 0) await runTool('fusermount3', ['-uz', mnt], 120_000);
        }
      }
    } finally {
      await exported.close();
    }
  };
  try {
    fs.mkdirSync(mnt);
    if (loop) {
      const o = ['loop'];
      if (opts.readOnly) o.push('ro');
      if (type === 'ext4' && opts.readOnly) o.push('noload');
      if (type === 'xfs') o.push('nouuid', ...(opts.readOnly ? ['norecovery'] : []));
      await runToolOk('mount', ['-t', type, '-o', o.join(','), exported.file, mnt], `mount thin device ${id}`);
    } else {
      const o = opts.readOnly ? ['-o', 'ro'] : ['-o', 'fakeroot'];
      await runToolOk(requireTool('fuse2fs', 'mount a layer without root'), [exported.file, mnt, ...o], `fuse2fs thin device ${id}`);
    }
    mounted = true;
    return { path: mnt, unmount };
  } catch (e) {
    await unmount();
    throw e;
  }
}

/** Is anything mounted at or under `dir`? (/proc/self/mounts) */
export function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').map((l) => l.split(' ')[1]).filter((m) => m !== undefined && (m === dir || m.startsWith(dir + '/')))
    .map((m) => m.replace(/\\040/g, ' '));
}
