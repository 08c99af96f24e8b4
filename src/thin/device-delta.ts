/**
 * Device delta: the differences between the mappings of two devices of one pool,
 * read from its metadata and streamed side by side into report/delta-format.ts (the
 * diff walk and thin_delta's text).
 */
import { ThinError } from '../errors';
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
 * delta compares), read leaf by leaf. Allocation-free: the iterator hands out one run
 * object, changed in place by each step (delta reads it before stepping).
 */
function dataRuns(md: MetadataView, id: number): Iterable<MappingRun> {
  return {
    [Symbol.iterator](): Iterator<MappingRun> {
      const leaves = md.mappingLeaves(id)[Symbol.iterator]();
      const run: MappingRun = { originBegin: 0, dataBegin: 0, length: 0, time: 0 };
      const result: IteratorResult<MappingRun> = { value: run, done: false };
      let bytes: Uint8Array = new Uint8Array(0);
      let view: { key(i: number): number; valueOffset(i: number): number } | undefined;
      let n = 0;
      let i = 0;
      let ended = false;
      /** Entry i of the leaf as (origin, data), moving to the next leaf as needed; false at the end. */
      const entry = (): boolean => {
        while (i >= n) {
          if (ended) return false;
          const r = leaves.next();
          if (r.done) { ended = true; return false; }
          view = r.value; bytes = r.value.bytes; n = r.value.count; i = 0;
        }
        return true;
      };
      return {
        next(): IteratorResult<MappingRun> {
          if (!entry()) return { value: undefined, done: true };
          const o = view!.key(i);
          const d = blockTimeBlock(bytes, view!.valueOffset(i));
          let len = 1;
          i++;
          while (entry()) {
            if (view!.key(i) !== o + len || blockTimeBlock(bytes, view!.valueOffset(i)) !== d + len) break;
            len++;
            i++;
          }
          run.originBegin = o; run.dataBegin = d; run.length = len;
          return result;
        },
      };
    },
  };
}

/** The same walk as data: every stretch with its kind and data blocks. */
export function deltaRanges(md: MetadataView, snap1: number, snap2: number): DiffRange[] {
  for (const d of [snap1, snap2]) {
    if (!md.hasDevice(d)) throw new ThinError('E_NO_DEVICE', `thin device ${d} does not exist in this pool; see "thinsim ls"`, { device: d });
  }
  return diffRanges({ devId: snap1, mappings: mappingRuns(md, snap1) }, { devId: snap2, mappings: mappingRuns(md, snap2) });
}
