/**
 * Dump: replay a pool's metadata (live or the held metadata snapshot) as a
 * metadata stream (see xml/types.ts) into a sink: the XML, JSON or
 * human-readable writers, or anything else. Streams: one leaf at a time.
 */
import { hot } from '../hot';
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
 * Each leaf is decoded into its runs in one call (hot.leafRuns, see RunMerger): no
 * object per mapping, one per run.
 */
export function* mappingRuns(md: MetadataView, id: number): Generator<MappingRun> {
  const runs = new RunMerger();
  const done: MappingRun[] = [];
  const push = (originBegin: number, dataBegin: number, length: number, time: number) => { done.push({ originBegin, dataBegin, length, time }); };
  for (const leaf of md.mappingLeaves(id)) {
    runs.leaf(leaf, push);
    // Runs finished in this leaf; the one still open may go on in the next.
    for (let i = 0; i < done.length; i++) yield done[i];
    done.length = 0;
  }
  runs.finish(push);
  yield* done;
}

/** Replay `id`'s mappings as runs into `emit` (merged as `mappingRuns` merges; no object per run). */
export function replayMappings(md: MetadataView, id: number, emit: (origin: number, data: number, length: number, time: number) => void): void {
  const runs = new RunMerger();
  for (const leaf of md.mappingLeaves(id)) runs.leaf(leaf, emit);
  runs.finish(emit);
}

/** Entries a leaf of 8-byte values can hold in a 4 KiB node. */
const MAX_LEAF_ENTRIES = Math.floor((4096 - 32) / 16);

type Leaf = MetadataView['mappingLeaves'] extends (id: number) => Iterable<infer L> ? L : never;

/**
 * The one run-merging rule of dump: consecutive virtual blocks mapped to consecutive data
 * blocks with the same time make one run; the run still open carries over to the next leaf.
 */
class RunMerger {
  private o = -1;
  private d = 0;
  private len = 0;
  private t = 0;
  private readonly runs = new Float64Array(4 * MAX_LEAF_ENTRIES);

  leaf(leaf: Leaf, emit: (origin: number, data: number, length: number, time: number) => void): void {
    // The leaf's own runs in one call (native when the addon is loaded), then joined here
    // with the run left open by the leaf before; a key past 2^53 falls back to the view,
    // whose key() reports it.
    const k = leaf.count <= MAX_LEAF_ENTRIES ? hot.leafRuns(leaf.bytes, true, this.runs) : -1;
    if (k < 0) { this.entries(leaf, emit); return; }
    const r = this.runs;
    for (let j = 0; j < 4 * k; j += 4) {
      const v = r[j], b = r[j + 1], len = r[j + 2], tm = r[j + 3];
      if (this.len > 0 && v === this.o + this.len && b === this.d + this.len && tm === this.t) { this.len += len; continue; }
      if (this.len > 0) emit(this.o, this.d, this.len, this.t);
      this.o = v; this.d = b; this.len = len; this.t = tm;
    }
  }

  /** The same merge, entry by entry through the view. */
  private entries(leaf: Leaf, emit: (origin: number, data: number, length: number, time: number) => void): void {
    const n = leaf.count;
    const bytes = leaf.bytes;
    for (let i = 0; i < n; i++) {
      const v = leaf.key(i);
      const off = leaf.valueOffset(i);
      const b = blockTimeBlock(bytes, off);
      const tm = blockTimeTime(bytes, off);
      if (this.len > 0 && v === this.o + this.len && b === this.d + this.len && tm === this.t) { this.len++; continue; }
      if (this.len > 0) emit(this.o, this.d, this.len, this.t);
      this.o = v; this.d = b; this.len = 1; this.t = tm;
    }
  }

  finish(emit: (origin: number, data: number, length: number, time: number) => void): void {
    if (this.len > 0) emit(this.o, this.d, this.len, this.t);
    this.len = 0;
  }
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
