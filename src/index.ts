/**
 * thinsim's public library API: everything a program needs to run a userspace
 * dm-thin pool, read or write kernel-format metadata, and check it. The CLI imports
 * the same modules directly (docs/architecture.md gives the layers); what is not
 * exported here is internal and may change.
 */
export { ThinError, isThinError } from './errors';
export type { ThinErrorCode, ThinErrorDetails } from './errors';
export * as units from './units';

// The pool engine (loop-lvm / direct-lvm, data path, snapshots, status).
export { Pool, DEFAULT_DATA_SIZE, DEFAULT_METADATA_SIZE, DEFAULT_BLOCK_SECTORS } from './pool/pool';
export type { CreateOptions, OpenOptions, PoolStatus, ThinStatus, PoolHealth, BlockStatusRun } from './pool/pool';
export type { PoolTable, PoolFeatures, PoolMode, DiscardMode } from './pool/table';
export { importImage, exportImage } from './pool/image';
export { dockerInfo, kernelFields, humanSize } from './pool/status-format';

// Kernel-format metadata, offline tools.
export { ThinMetadata, MAX_DEVICE_ID } from './thin/metadata';
export type { DeviceDetails, BlockTime, Superblock } from './thin/metadata';
export { checkMetadata } from './thin/check';
export type { CheckReport, Finding } from './thin/check';
export { dumpMetadata, mappingRuns } from './thin/dump';
export { restoreFile, RestoreSink } from './thin/restore';
export { lsDevices } from './thin/device-usage';
export { deltaDevices } from './thin/device-delta';
export { readXml, parseXml } from './thin/xml/reader';
export { XmlWriter, JsonWriter, HumanReadableWriter } from './thin/xml/writer';

// Devices.
export { FileDevice } from './io/file-device';
export { MemoryDevice } from './io/memory-device';
export { DataDevice } from './io/data-device';
export type { BlockDevice } from './io/block-device';

// The NBD export.
export { NbdServer, serve } from './nbd/server';
export type { ServeOptions } from './nbd/server';

// A thin device as a block device, and the filesystem on it.
export { MountHost } from './mounts';
export type { Attachment, MountedTree } from './mounts';

// Image layers as thin snapshots (Docker's devicemapper driver).
export { LayerStore, Tree } from './layers';
export type { LayerInfo, LayerStoreOptions } from './layers';

// The demo.
export { runDemo } from './experiments/demo';
