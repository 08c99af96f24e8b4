/**
 * Mounts: a thin device as a block device, and the filesystem on it.
 *
 * Contract: MountHost (host.ts) is the one owner, per pool and process, of everything that
 * makes a thin device visible to the kernel: the in-process NBD export, the nbdfuse file,
 * the loop device, the mount; it records each piece under POOL/run before it exists,
 * tears them down in reverse order, never stops a server under a filesystem that may hold
 * dirty pages, and cleans up after a dead process on the next open. A writable loop
 * device let go with release() may be kept as a spare, pointed at no device, and handed
 * to the next attachment of its size (no nbdfuse or losetup then). filesystem.ts makes,
 * mounts and unmounts filesystems (Docker's mkfs options); table.ts reads the mount
 * table and loop devices (an unreadable table is an error); holders.ts names the
 * processes that keep a mount busy.
 */
export { MountHost, canLoopMount, processStart } from './host';
export type { Attachment, AttachRecord, MountedTree } from './host';
export { makeFilesystem, filesystemUuid, mountOptions, unmountFilesystem, type Filesystem } from './filesystem';
export { mountTable, mountsUnder, loopsBackedBy } from './table';
export { holdersOf, describeHolders } from './holders';
