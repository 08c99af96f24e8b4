/**
 * Filesystems on a thin device's block device (or its nbdfuse file): make, identify,
 * mount, unmount.
 *
 * Contract:
 * - makeFilesystem is Docker's: ext4 with nodiscard and eager inode tables and journal
 *   (then tune2fs -c -1 -i 0), or xfs.
 * - Mount options: read-only mounts of ext4 add `noload` (no journal replay on a frozen
 *   layer); xfs always mounts with `nouuid` (every layer carries the base device's UUID)
 *   and read-only with `norecovery`.
 * - unmount retries a busy mount for a while; if it stays busy it throws E_MOUNTED naming
 *   the processes that hold it and leaves it mounted (and so served): a filesystem that
 *   may still hold dirty pages never loses the device under it.
 */
import { ThinError } from '../errors';
import { requireTool, runTool, runToolOk } from '../tools';
import { describeHolders, holdersOf } from './holders';
import { mountsUnder } from './table';

export type Filesystem = 'ext4' | 'xfs' | 'none';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Docker's mkfs: ext4 with nodiscard and eager inode tables and journal (then tune2fs -c -1 -i 0), or xfs; `extra` goes before the file (containerd devmapper's fs_options). */
export async function makeFilesystem(file: string, type: Filesystem, extra: readonly string[] = []): Promise<void> {
  if (type === 'ext4') {
    const mkfs = requireTool('mkfs.ext4', 'make the base device\'s filesystem');
    const tune2fs = requireTool('tune2fs', 'tune the base device\'s filesystem');
    let r = await runTool(mkfs, ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', ...extra, file]);
    // Older e2fsprogs lack lazy_journal_init; Docker retries without it.
    if (r.status !== 0) r = await runTool(mkfs, ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0', ...extra, file]);
    if (r.status !== 0) throw new ThinError('E_IO', `mkfs.ext4 ${file} exited ${r.status}: ${r.stderr.trim()}`);
    await runToolOk(tune2fs, ['-c', '-1', '-i', '0', file], 'tune2fs');
  } else if (type === 'xfs') {
    const mkfs = requireTool('mkfs.xfs', 'make the base device\'s filesystem');
    await runToolOk(mkfs, ['-q', '-f', ...extra, file], 'mkfs.xfs');
  } else {
    throw new ThinError('E_INVALID', `cannot make a filesystem of type "${type}"; use ext4 or xfs`);
  }
}

/** The filesystem UUID blkid reads from `file` (Docker's BaseDeviceUUID). */
export async function filesystemUuid(file: string): Promise<string> {
  const blkid = requireTool('blkid', 'read the base device\'s UUID');
  return (await runToolOk(blkid, ['-p', '-s', 'UUID', '-o', 'value', file], 'blkid')).trim();
}

/** The mount options thinsim uses for a layer's filesystem. */
export function mountOptions(type: Filesystem, readOnly: boolean): string[] {
  const o: string[] = [];
  if (readOnly) o.push('ro');
  if (type === 'ext4' && readOnly) o.push('noload');
  if (type === 'xfs') o.push('nouuid', ...(readOnly ? ['norecovery'] : []));
  return o;
}

export async function mountFilesystem(device: string, mnt: string, type: Filesystem, readOnly: boolean, what: string): Promise<void> {
  const o = mountOptions(type, readOnly);
  await runToolOk(requireTool('mount', 'mount a layer'), ['-t', type, ...(o.length ? ['-o', o.join(',')] : []), device, mnt], what);
}

/**
 * Unmount `mnt` (umount, or fusermount3 -u for a FUSE mount): a busy mount is retried for
 * `retryMs`, then E_MOUNTED names its holders and it stays mounted.
 */
export async function unmountFilesystem(mnt: string, opts: { fuse?: boolean; retryMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (opts.retryMs ?? 5_000);
  for (;;) {
    if (!mountsUnder(mnt).includes(mnt)) return;
    const r = opts.fuse ? await runTool('fusermount3', ['-u', mnt], 120_000) : await runTool('umount', [mnt], 120_000);
    if (r.status === 0) return;
    const busy = /busy/i.test(r.stderr);
    if (!busy || Date.now() >= deadline) {
      const hs = holdersOf(mnt);
      const who = hs.length ? `it is held by ${describeHolders(hs)}` : (r.stderr.trim() || `exit ${r.status}`);
      throw new ThinError(busy ? 'E_MOUNTED' : 'E_IO', `cannot unmount ${mnt}: ${who}; ${busy ? 'close those files or leave that directory, then try again' : 'see the message above'} (the layer stays mounted and served)`, { path: mnt, holders: hs });
    }
    await sleep(200);
  }
}

/** Is `mnt` a mount point right now? (From the mount table only: never a stat of the tree.) */
export function isMounted(mnt: string): boolean {
  return mountsUnder(mnt).includes(mnt);
}
