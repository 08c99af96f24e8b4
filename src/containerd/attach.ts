/**
 * A snapshot's thin device as a loop block device: the one place the containerd
 * service attaches and detaches devices, through the mounts layer's MountHost (which
 * records every piece under POOL/run, so a killed service is cleaned up after at the
 * next open).
 *
 * Contract:
 * - attachDevice(host, id, { readOnly }) gives `/dev/loopN` backed by the thin device
 *   (MountHost: in-process NBD export, nbdfuse file, losetup). A read-only attachment is
 *   read-only at the NBD export and at the loop device.
 * - detach() tears it down (MountHost's order), release() may keep the loop device as a
 *   MountHost spare for the next attachment; callers check mountedAt() first, since
 *   MountHost waits up to 60 s for a mounted loop device to be let go and then fails
 *   with E_MOUNTED.
 * - mountedAt(device) lists the mount points whose source is the device, from the
 *   kernel's mount table (an unreadable table is an error).
 */
import * as fs from 'fs';
import { ThinError } from '../errors';
import type { MountHost } from '../mounts/host';
import { mountTable } from '../mounts/table';

export interface Attachment {
  device: string;
  readOnly: boolean;
  detach(): Promise<void>;
  /** Let go of the device, keeping the loop device as a spare when MountHost can (MountHost.release). */
  release(): Promise<void>;
}

/** Why loop devices cannot be attached here, or undefined when they can. */
export function loopMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'attaching loop devices needs root';
  if (!fs.existsSync('/dev/loop-control')) return '/dev/loop-control is missing (modprobe loop)';
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse is missing (modprobe fuse)';
  return undefined;
}

export async function attachDevice(host: MountHost, id: number, opts: { readOnly: boolean }): Promise<Attachment> {
  const why = loopMissing();
  if (why) throw new ThinError('E_UNSUPPORTED', `cannot attach thin device ${id} as a block device: ${why}`, { device: id });
  const a = await host.attach(id, { readOnly: opts.readOnly, loop: true, name: `dev${id}` });
  if (!a.loop) {
    await a.detach();
    throw new ThinError('E_INVARIANT', `MountHost attached thin device ${id} without a loop device`, { device: id });
  }
  return { device: a.loop, readOnly: opts.readOnly, detach: () => a.detach(), release: () => a.release() };
}

/** Mount points whose source is `device`. */
export function mountedAt(device: string): string[] {
  return mountTable().filter((m) => m.source === device).map((m) => m.target);
}
