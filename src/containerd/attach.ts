/**
 * A snapshot's thin device as a loop block device: the one place the containerd
 * service attaches and detaches devices, so it can move onto the mounts layer's
 * MountHost without touching the service.
 *
 * Contract:
 * - attachDevice(pool, id, { readOnly }) gives `/dev/loopN` backed by the thin device
 *   (today: the device exported over in-process NBD, seen as a file by nbdfuse, and
 *   `losetup -f --show [-r]` on that file). A read-only attachment is read-only at the
 *   NBD export and at the loop device.
 * - detach() runs `losetup -d`, then closes the export; it runs once (later calls
 *   return the first call's promise). It must not be called while the loop device is
 *   mounted (mountedAt() tells): the caller checks, since a mounted loop device only
 *   detaches lazily and its filesystem would lose its backing.
 * - Errors name the tool and what to install; a failure on the way up undoes the
 *   export.
 */
import * as fs from 'fs';
import { ThinError } from '../errors';
import { exportDevice } from '../layers/fs';
import type { Pool } from '../pool/pool';
import { requireTool, runTool } from '../tools';

export interface Attachment {
  device: string;
  readOnly: boolean;
  detach(): Promise<void>;
}

/** Why loop devices cannot be attached here, or undefined when they can. */
export function loopMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'attaching loop devices needs root';
  if (!fs.existsSync('/dev/loop-control')) return '/dev/loop-control is missing (modprobe loop)';
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse is missing (modprobe fuse)';
  return undefined;
}

export async function attachDevice(pool: Pool, id: number, opts: { readOnly: boolean }): Promise<Attachment> {
  const why = loopMissing();
  if (why) throw new ThinError('E_UNSUPPORTED', `cannot attach thin device ${id} as a block device: ${why}`, { device: id });
  const losetup = requireTool('losetup', 'attach a snapshot as a loop device');
  const exported = await exportDevice(pool, id, { readOnly: opts.readOnly, name: `dev${id}` });
  let device: string;
  try {
    const r = await runTool(losetup, ['-f', '--show', ...(opts.readOnly ? ['-r'] : []), exported.file], 60_000);
    if (r.status !== 0) throw new ThinError('E_IO', `losetup -f --show ${exported.file} exited ${r.status}: ${r.stderr.trim()}`, { device: id });
    device = r.stdout.trim();
  } catch (e) {
    await exported.close();
    throw e;
  }
  let done: Promise<void> | undefined;
  const detach = (): Promise<void> => {
    done ??= (async () => {
      try {
        const r = await runTool(losetup, ['-d', device], 60_000);
        // Already detached (by an operator, or a cleanup of loop devices): nothing to do.
        if (r.status !== 0 && boundTo(device) !== exported.file) return;
        if (r.status !== 0) throw new ThinError('E_IO', `losetup -d ${device} exited ${r.status}: ${r.stderr.trim()}`, { device: id });
      } finally {
        await exported.close();
      }
    })();
    return done;
  };
  return { device, readOnly: opts.readOnly, detach };
}

/** The backing file of loop device `device` now, or undefined when it is not bound. */
function boundTo(device: string): string | undefined {
  try {
    return fs.readFileSync(`/sys/block/${device.replace(/^\/dev\//, '')}/loop/backing_file`, 'utf8').trim();
  } catch {
    return undefined; // no backing_file: the loop device is not bound
  }
}

/** Mount points (in this process's mount namespace) whose source is `device`. */
export function mountedAt(device: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch (e) {
    throw new ThinError('E_IO', `cannot read /proc/self/mountinfo to see whether ${device} is mounted: ${(e as Error).message}`);
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const source = line.slice(sep + 3).split(' ')[1];
    if (source === device) out.push(line.split(' ')[4].replace(/\\040/g, ' '));
  }
  return out;
}
