/**
 * thin_dump XML model: the values carried by the XML (and JSON / human_readable) forms of
 * a pool's metadata, and the event interface shared by readers and writers.
 *
 * Contract: a metadata stream is the call sequence
 *   superblock (device mapping* endDevice)* endSuperblock
 * with devices in the order they are to be written (thin_dump: ascending dev_id) and, inside a
 * device, mappings in strictly increasing origin order with no overlap. A mapping call is a run:
 * `length` consecutive virtual blocks `originBegin + i -> dataBegin + i`, all with `time`
 * (single_mapping is length 1). Producers may split or join runs freely; writers re-merge them
 * exactly as thin_dump does. All numbers are JS integers <= 2^53 - 1; readers reject anything
 * larger instead of rounding.
 */

/** Superblock fields as they appear in thin_dump's `<superblock>` element. */
export interface SuperblockInfo {
  /** Printed by thin_dump 0.9.0 as "" whatever is stored; up to 16 bytes are stored on disk. */
  uuid: string;
  /** Pool time (the superblock `time` field, a u32 on disk). */
  time: number;
  /** Superblock `trans_id`. */
  transaction: number;
  /** Superblock flags (bit 0 = needs_check). Defaults to 0 when the XML omits it. */
  flags: number;
  /** Superblock version. Defaults to 2 (what the kernel and thin_restore 1.x write) when omitted. */
  version: number;
  /** Data block size in 512-byte sectors. */
  dataBlockSize: number;
  /** Number of blocks in the data space map. */
  nrDataBlocks: number;
  /** Block of a held metadata snapshot (input only; thin_dump never prints it, see writer.ts). */
  metadataSnap?: number;
}

/** One `<device>` element: the device details record of one thin device. */
export interface DeviceInfo {
  /** Thin device id (< 2^24, the kernel's limit). */
  devId: number;
  /** Number of mapped blocks as recorded in the details tree. */
  mappedBlocks: number;
  transaction: number;
  /** Pool time when the device was created (u32 on disk). */
  creationTime: number;
  /** Pool time of the last snapshot of (or from) this device: `snapshotted_time` (u32 on disk). */
  snapTime: number;
}

/** A run of mappings: `length` blocks from `originBegin -> dataBegin`, all with the same time. */
export interface MappingRun {
  originBegin: number;
  dataBegin: number;
  length: number;
  time: number;
}

/**
 * Events of a metadata stream (see the contract above). Readers call a sink with this shape;
 * writers implement it. Calls are synchronous: a sink that needs to do I/O buffers it or
 * blocks (the reader never holds more than one input chunk, so memory stays bounded).
 */
export interface MetadataSink {
  superblock(sb: SuperblockInfo): void;
  device(dev: DeviceInfo): void;
  mapping(originBegin: number, dataBegin: number, length: number, time: number): void;
  endDevice(): void;
  endSuperblock(): void;
}

/** Largest integer a JS number holds exactly. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Thin device ids are 24-bit in the kernel (dm-thin `MAX_DEV_ID`). */
export const MAX_DEV_ID = 2 ** 24 - 1;
/** Largest value of a u32 field (times, flags, version, data_block_size). */
export const MAX_U32 = 2 ** 32 - 1;
