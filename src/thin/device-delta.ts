/**
 * Device delta: the differences between the mappings of two devices of one pool,
 * read from its metadata and streamed side by side into report/delta-format.ts (the
 * diff walk and thin_delta's text).
 */
import { ThinError } from '../errors';
import { hot } from '../hot';
import type { LeafView } from '../pdata/btree/btree';
import { diffRanges, DiffRange, writeDelta } from './report/delta-format';
import type { OutputFn } from './xml/writer';
import type { MetadataView } from './offline';
import type { MappingRun } from './xml/types';
import { blockTimeBlock } from './format/block-time';
import { mappingRuns, superblockInfo } from './dump';

export function deltaDevices(md: MetadataView, snap1: number, snap2: number, out: OutputFn, verbose = false, bytes?: (chunk: Uint8Array) => void): void {
  for (const d of [snap1, snap2]) {
    if (!md.hasDevice(d)) throw new ThinError('E_NO_DEVICE', `thin device ${d} does not exist in this pool; see "thinsim ls"`, { device: d });
  }
  writeDelta(superblockInfo(md), { devId: snap1, mappings: dataRuns(md, snap1) }, { devId: snap2, mappings: dataRuns(md, snap2) }, out, { verbose, bytes });
}

/**
 * `id`'s mappings as runs where origin and data both advance by one, times ignored (what
 * delta compares), read leaf by leaf, each leaf's runs decoded in one call (hot.leafRuns);
 * the diff walk joins runs that continue across leaves. Allocation-free: the iterator
 * hands out one run object, changed in place by each step (delta reads it before stepping).
 */
function dataRuns(md: MetadataView, id: number): Iterable<MappingRun> {
  return {
    [Symbol.iterator](): Iterator<MappingRun> {
      const leaves = md.mappingLeaves(id)[Symbol.iterator]();
      const run: MappingRun = { originBegin: 0, dataBegin: 0, length: 0, time: 0 };
      const result: IteratorResult<MappingRun> = { value: run, done: false };
      const runs = new Float64Array(4 * MAX_LEAF_ENTRIES);
      let n = 0; // runs of the current leaf, times 4
      let j = 0;
      return {
        next(): IteratorResult<MappingRun> {
          while (j >= n) {
            const r = leaves.next();
            if (r.done) return { value: undefined, done: true };
            n = 4 * leafRuns(r.value, runs);
            j = 0;
          }
          run.originBegin = runs[j]; run.dataBegin = runs[j + 1]; run.length = runs[j + 2];
          j += 4;
          return result;
        },
      };
    },
  };
}

/** Entries a leaf of 8-byte values can hold in a 4 KiB node. */
const MAX_LEAF_ENTRIES = Math.floor((4096 - 32) / 16);

/** The leaf's runs (times ignored) into `out`; entry by entry when the one call cannot decode it. */
function leafRuns(leaf: LeafView, out: Float64Array): number {
  const k = leaf.count <= MAX_LEAF_ENTRIES ? hot.leafRuns(leaf.bytes, false, out) : -1;
  if (k >= 0) return k;
  // A key past 2^53 (leaf.key throws E_CORRUPT naming it), or an oversized leaf: one run per entry.
  const big = new Float64Array(4 * leaf.count);
  for (let i = 0; i < leaf.count; i++) {
    big[4 * i] = leaf.key(i); big[4 * i + 1] = blockTimeBlock(leaf.bytes, leaf.valueOffset(i)); big[4 * i + 2] = 1;
  }
  if (big.length > out.length) throw new ThinError('E_CORRUPT', `a mapping leaf holds ${leaf.count} entries, more than a 4 KiB node can`, { kind: 'btree node' });
  out.set(big);
  return leaf.count;
}

/** The same walk as data: every stretch with its kind and data blocks. */
export function deltaRanges(md: MetadataView, snap1: number, snap2: number): DiffRange[] {
  for (const d of [snap1, snap2]) {
    if (!md.hasDevice(d)) throw new ThinError('E_NO_DEVICE', `thin device ${d} does not exist in this pool; see "thinsim ls"`, { device: d });
  }
  return diffRanges({ devId: snap1, mappings: mappingRuns(md, snap1) }, { devId: snap2, mappings: mappingRuns(md, snap2) });
}
