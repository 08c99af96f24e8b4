/**
 * Image layers as thin snapshots: the layers layer's public face.
 *
 * Contract: LayerStore (snapshotter.ts) is the API the image importer, the CLI and the
 * experiments use; records.ts holds Docker's on-disk records, device-transactions.ts
 * Docker's transaction protocol over them;
 * mounts go through the mounts layer (MountHost), and work inside a mounted tree runs in
 * a tree worker (tree.ts, a child process); synth.ts builds synthetic
 * block-level layer chains. Nothing here reaches below the pool's public API.
 */
export { LayerStore, DEFAULT_BASE_SIZE, DEFAULT_MIN_FREE_SPACE } from './snapshotter';
export type { LayerInfo, LayerKind, LayerStoreOptions, LayerUsage, LayerDiffRange, CommitMeta, Filesystem } from './snapshotter';
export { DockerRecords, dockerPaths, newCacheId, writeAtomic } from './records';
export type { DevInfo, DeviceSetMetadata, TransactionMetadata, LayerRecord, LayerIndex, LayerdbEntry, DockerPaths } from './records';
export { DeviceTransactions } from './device-transactions';
export type { Recovery } from './device-transactions';
export { Tree } from './tree';
export { synthesize, synthChunkWord, parsePercent } from './synth';
export type { SynthOptions, SynthReport, SynthLayerReport } from './synth';
export { readLayerFile, listLayerFiles } from './files';
export type { LayerFileEntry } from './files';
