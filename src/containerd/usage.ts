/**
 * A snapshot's usage as containerd reports it: bytes and inodes the snapshot itself
 * adds on top of its parent.
 *
 * Contract:
 * - size: the device's exclusive bytes as thin_ls computes them (chunks no other
 *   device maps). For an active snapshot (which has no children) that is every chunk
 *   it wrote; a committed snapshot's figure is taken at commit, before children share
 *   its chunks, and kept (containerd's rule: committed usage is frozen).
 * - inodes: used inodes of the filesystem on the device minus those of its parent (the
 *   base device for a snapshot without a parent), read from the filesystem's
 *   superblock (ext4: s_inodes_count - s_free_inodes_count; xfs: sb_icount -
 *   sb_ifree). The kernel writes those counters at sync and unmount, so for a mounted
 *   active snapshot the figure is as of the filesystem's last superblock write; after
 *   an unmount (always before a commit) it is exact. 0 for filesystem "none".
 */
import type { LayerStore } from '../layers/snapshotter';
import type { SnapshotUsage } from './records';

async function usedInodes(store: LayerStore, deviceId: number): Promise<number> {
  const fsType = store.filesystem();
  if (fsType === 'ext4') {
    const sb = await store.pool.read(deviceId, 1024, 1024);
    if (sb.readUInt16LE(56) !== 0xef53) return 0; // no ext4 superblock (never formatted)
    return sb.readUInt32LE(0) - sb.readUInt32LE(16);
  }
  if (fsType === 'xfs') {
    const sb = await store.pool.read(deviceId, 0, 512);
    if (sb.readUInt32BE(0) !== 0x58465342) return 0; // "XFSB"
    return Number(sb.readBigUInt64BE(128) - sb.readBigUInt64BE(136));
  }
  return 0;
}

/** Usage of layer `name` now (see the contract). */
export async function measureUsage(store: LayerStore, name: string): Promise<SnapshotUsage> {
  const layer = store.stat(name);
  const [u] = store.usage(name);
  const parentDevice = layer.parent !== undefined ? store.stat(layer.parent).deviceId : store.records.readDevInfo('')?.device_id;
  const mine = await usedInodes(store, layer.deviceId);
  const theirs = parentDevice === undefined ? 0 : await usedInodes(store, parentDevice);
  return { size: u.exclusiveBytes, inodes: Math.max(0, mine - theirs) };
}
