/**
 * Device delta: the differences between the mappings of two devices of one pool,
 * read from its metadata and streamed side by side into report/delta-format.ts (the
 * diff walk and thin_delta's text).
 */
import { ThinError } from '../errors';
import { diffRanges, DiffRange, writeDelta } from './report/delta-format';
import type { OutputFn } from './xml/writer';
import type { MetadataView } from './offline';
import { mappingRuns, superblockInfo } from './dump';

export function deltaDevices(md: MetadataView, snap1: number, snap2: number, out: OutputFn, verbose = false): void {
  for (const d of [snap1, snap2]) {
    if (!md.hasDevice(d)) throw new ThinError('E_NO_DEVICE', `thin device ${d} does not exist in this pool; see "thinsim ls"`, { device: d });
  }
  writeDelta(superblockInfo(md), { devId: snap1, mappings: mappingRuns(md, snap1) }, { devId: snap2, mappings: mappingRuns(md, snap2) }, out, { verbose });
}

/** The same walk as data: every stretch with its kind and data blocks. */
export function deltaRanges(md: MetadataView, snap1: number, snap2: number): DiffRange[] {
  for (const d of [snap1, snap2]) {
    if (!md.hasDevice(d)) throw new ThinError('E_NO_DEVICE', `thin device ${d} does not exist in this pool; see "thinsim ls"`, { device: d });
  }
  return [...diffRanges({ devId: snap1, mappings: mappingRuns(md, snap1) }, { devId: snap2, mappings: mappingRuns(md, snap2) })];
}
