/**
 * thin_ls numbers for every device: mapped, exclusive and shared blocks under
 * thin_ls's rule (a mapping is exclusive when no other mapping anywhere in the pool
 * points at its data block; see report/ls.ts), plus the details fields.
 * Two passes over all mappings; memory is 2 bits per data block.
 */
import { LsDevice, SharingCounter } from './report/ls';
import type { ThinMetadata } from './metadata';
import { replayMappings } from './dump';

export function lsDevices(md: ThinMetadata, devices = md.devices()): LsDevice[] {
  const counter = new SharingCounter(Math.max(md.nrDataBlocks, highestDataBlock(md) + 1));
  for (const dev of md.devices()) replayMappings(md, dev, (_o, d, len) => counter.inc(d, len));
  return devices.map((dev) => {
    const det = md.deviceDetails(dev);
    let exclusive = 0;
    replayMappings(md, dev, (_o, d, len) => { exclusive += counter.exclusiveIn(d, len); });
    return {
      devId: dev,
      mappedBlocks: det.mappedBlocks,
      exclusiveBlocks: exclusive,
      transaction: det.transactionId,
      creationTime: det.creationTime,
      snapTime: det.snapshottedTime,
    };
  });
}

/** Highest data block any mapping uses (a metadata snapshot view has no data sm size). */
function highestDataBlock(md: ThinMetadata): number {
  let hi = -1;
  if (md.nrDataBlocks > 0) return hi;
  for (const dev of md.devices()) replayMappings(md, dev, (_o, d, len) => { hi = Math.max(hi, d + len - 1); });
  return hi;
}
