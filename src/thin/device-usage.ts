/**
 * Device usage, computed from a pool's metadata: thin_ls's numbers for every device,
 * mapped, exclusive and shared blocks under thin_ls's rule (a mapping is exclusive
 * when no other mapping anywhere in the pool points at its data block), plus the
 * details fields. report/ls-format.ts prints them as thin_ls does.
 * Two passes over all mappings; memory is 2 bits per data block. `lsRows` skips them
 * when no requested column needs the sharing counts (thin_ls's default columns do not).
 */
import { LsDevice, LsField, LsRow, needsSharing, SharingCounter } from './report/ls-format';
import type { MetadataView } from './offline';
import { replayMappings } from './dump';

export function lsDevices(md: MetadataView, devices = md.devices()): LsDevice[] {
  const counter = new SharingCounter(Math.max(md.nrDataBlocks, highestDataBlock(md) + 1));
  for (const id of md.devices()) replayMappings(md, id, (_o, d, len) => counter.inc(d, len));
  return devices.map((id) => {
    let exclusive = 0;
    replayMappings(md, id, (_o, d, len) => { exclusive += counter.exclusiveIn(d, len); });
    return { ...detailsRow(md, id), exclusiveBlocks: exclusive };
  });
}

/**
 * The rows thin_ls prints for `fields`: the sharing counts (two passes over every
 * mapping) only when a column needs them, as thin_ls does; otherwise just the details.
 */
export function lsRows(md: MetadataView, fields: readonly LsField[]): LsRow[] {
  return needsSharing(fields) ? lsDevices(md) : md.devices().map((id) => detailsRow(md, id));
}

function detailsRow(md: MetadataView, id: number): LsRow {
  const det = md.deviceDetails(id);
  return { devId: id, mappedBlocks: det.mappedBlocks, transaction: det.transactionId, creationTime: det.creationTime, snapTime: det.snapshottedTime };
}

/** Highest data block any mapping uses (a metadata snapshot view has no data sm size). */
function highestDataBlock(md: MetadataView): number {
  let hi = -1;
  if (md.nrDataBlocks > 0) return hi;
  for (const id of md.devices()) replayMappings(md, id, (_o, d, len) => { hi = Math.max(hi, d + len - 1); });
  return hi;
}
