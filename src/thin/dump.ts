/**
 * Dump: replay a pool's metadata (live or the held metadata snapshot) as a
 * metadata stream (see xml/types.ts) into a sink: the XML, JSON or
 * human-readable writers, or anything else. Streams: one leaf at a time.
 */
import { blockTimeBlock, blockTimeTime } from './format/block-time';
import type { MappingRun, MetadataSink, SuperblockInfo } from './xml/types';
import type { MetadataView } from './offline';

/** The superblock as thin_dump prints it (uuid always "", as 0.9.0 does). */
export function superblockInfo(md: MetadataView): SuperblockInfo {
  const sb = md.superblock();
  return {
    uuid: '',
    time: sb.time,
    transaction: sb.transactionId,
    flags: sb.flags,
    version: sb.version,
    dataBlockSize: sb.dataBlockSize,
    // A metadata-snapshot copy has a zeroed data space-map root: thin_dump -m prints 0.
    nrDataBlocks: sb.dataSmRoot ? sb.dataSmRoot.nrBlocks : 0,
    metadataSnap: sb.heldRoot || undefined,
  };
}

/**
 * `id`'s mappings as maximal runs (origin+1, data+1, same time), in origin order.
 * Decodes the block_time values in place in each leaf (pdata's LeafView): no
 * object per mapping, one per run.
 */
export function* mappingRuns(md: MetadataView, id: number): Generator<MappingRun> {
  let o = -1, d = 0, len = 0, t = 0;
  const done: MappingRun[] = [];
  for (const leaf of md.mappingLeaves(id)) {
    const n = leaf.count;
    const bytes = leaf.bytes;
    for (let i = 0; i < n; i++) {
      const v = leaf.key(i);
      const off = leaf.valueOffset(i);
      const b = blockTimeBlock(bytes, off);
      const tm = blockTimeTime(bytes, off);
      if (len > 0 && v === o + len && b === d + len && tm === t) { len++; continue; }
      if (len > 0) done.push({ originBegin: o, dataBegin: d, length: len, time: t });
      o = v; d = b; len = 1; t = tm;
    }
    // Runs finished in this leaf; the one still open may go on in the next.
    for (let i = 0; i < done.length; i++) yield done[i];
    done.length = 0;
  }
  if (len > 0) yield { originBegin: o, dataBegin: d, length: len, time: t };
}

/** Replay `id`'s mappings as runs into `emit` (merged as `mappingRuns` merges; no object per run). */
export function replayMappings(md: MetadataView, id: number, emit: (origin: number, data: number, length: number, time: number) => void): void {
  let o = -1, d = 0, len = 0, t = 0;
  for (const leaf of md.mappingLeaves(id)) {
    const n = leaf.count;
    const bytes = leaf.bytes;
    for (let i = 0; i < n; i++) {
      const v = leaf.key(i);
      const off = leaf.valueOffset(i);
      const b = blockTimeBlock(bytes, off);
      const tm = blockTimeTime(bytes, off);
      if (len > 0 && v === o + len && b === d + len && tm === t) { len++; continue; }
      if (len > 0) emit(o, d, len, t);
      o = v; d = b; len = 1; t = tm;
    }
  }
  if (len > 0) emit(o, d, len, t);
}

export interface DumpOptions {
  /** Only these devices (default: all). */
  devices?: number[];
  /** Devices only, without their mappings (thin_dump --skip-mappings). */
  skipMappings?: boolean;
}

export function dumpMetadata(md: MetadataView, sink: MetadataSink, opts: DumpOptions = {}): void {
  sink.superblock(superblockInfo(md));
  const wanted = opts.devices ? new Set(opts.devices) : undefined;
  for (const id of md.devices()) {
    if (wanted && !wanted.has(id)) continue;
    const d = md.deviceDetails(id);
    sink.device({ devId: id, mappedBlocks: d.mappedBlocks, transaction: d.transactionId, creationTime: d.creationTime, snapTime: d.snapshottedTime });
    if (!opts.skipMappings) replayMappings(md, id, (o, db, len, t) => sink.mapping(o, db, len, t));
    sink.endDevice();
  }
  sink.endSuperblock();
}
