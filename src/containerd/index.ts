/**
 * thinsim as a containerd snapshotter: the containerd layer's public face.
 *
 * Contract: ThinSnapshotter (snapshots.ts) is containerd's snapshotter semantics over a
 * LayerStore; startSnapshotServer (server.ts) serves it as containerd's Snapshots gRPC
 * service on a unix socket; the rest are its parts (filters, records, usage, the
 * loop attachment, gRPC status codes). See docs/containerd.md.
 */
export { ThinSnapshotter } from './snapshots';
export type { SnapshotterOptions, SnapshotInfo, Mount, Kind } from './snapshots';
export { startSnapshotServer, checkSocketPath, loadSnapshotsProto, snapshotsService, protoDir } from './server';
export type { SnapshotServer } from './server';
export { parseFilters, matches } from './filters';
export { SnapshotRecords, checkLabels } from './records';
export { loopMissing } from './attach';
