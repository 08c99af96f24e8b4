/**
 * Pool and thin device status in the kernel's terms: the fields of
 * `dmsetup status` for a thin-pool and a thin target, plus what `docker info`
 * needs beside them (status-format.ts renders both).
 *
 * Contract: read-only; a report reflects the committed metadata for the fields the
 * kernel reports from it (transaction id, held root) and the live space maps for
 * block counts, as dm-thin's status does. The mode is the pool's health (ro also for
 * the read_only feature); in fail mode the status line is "Fail", as the kernel's is.
 */
import * as fs from 'fs';
import { PoolLock } from './pool-lock';
import type { PoolHealth, PoolState } from './state';
import { PoolMode, resolveDev } from './table';

export interface PoolStatus {
  transactionId: number;
  usedMetadataBlocks: number;
  totalMetadataBlocks: number;
  usedDataBlocks: number;
  totalDataBlocks: number;
  heldRoot: number;
  mode: PoolHealth;
  discard: 'discard_passdown' | 'no_discard_passdown' | 'ignore_discard';
  noSpacePolicy: 'queue_if_no_space' | 'error_if_no_space';
  needsCheck: boolean;
  /** Why the mode is ro or fail (the failure, or needs_check found at open); absent when healthy. */
  modeReason?: string;
  metadataLowWatermark: number;
  /** The kernel's status line (dmsetup status <pool>), without the "start length thin-pool" prefix. */
  line: string;
  dataBlockSize: number;
  lowWaterMark: number;
  dataFile: string;
  metadataFile: string;
  backend: PoolMode;
  /** Free bytes on the host filesystem holding the data file (loop-lvm), if known. */
  hostFreeBytes?: number;
  lockedBy?: number;
}

export interface ThinStatus {
  id: number;
  size: number;
  mappedSectors: number;
  /** Highest mapped sector, or undefined when nothing is mapped ("-" in dmsetup). */
  highestMappedSector: number | undefined;
  line: string;
}

export function poolStatus(s: PoolState): PoolStatus {
  const { md, table } = s;
  const space = md.spaceUsage();
  const f = table.features;
  const discard = f.ignoreDiscard ? 'ignore_discard' : f.noDiscardPassdown ? 'no_discard_passdown' : 'discard_passdown';
  const noSpacePolicy = f.errorIfNoSpace ? 'error_if_no_space' : 'queue_if_no_space';
  // The read_only feature reads as ro; needs_check always comes with ro or fail (state.ts).
  const mode: PoolHealth = s.mode === 'fail' ? 'fail' : md.needsCheck || f.readOnly ? 'ro' : s.mode;
  // The kernel warns when free metadata falls below min(total / 4, 4096 blocks) (dm-thin.c).
  const metadataLowWatermark = Math.min(Math.floor(space.metadataBlocks / 4), 4096);
  const { transactionId, heldRoot } = md.committedSuperblock();
  // In fail mode the kernel's whole status line is "Fail".
  const line = mode === 'fail' ? 'Fail' : `${transactionId} ${space.metadataUsed}/${space.metadataBlocks} ${space.dataUsed}/${space.dataBlocks} ${heldRoot || '-'} ${mode} ${discard} ${noSpacePolicy} ${md.needsCheck ? 'needs_check' : '-'} ${metadataLowWatermark}`;
  let hostFreeBytes: number | undefined;
  if (table.mode === 'loop-lvm') {
    try {
      const st = fs.statfsSync(resolveDev(s.dir, table.dataDev));
      hostFreeBytes = st.bavail * st.bsize;
    } catch { /* not available */ }
  }
  return {
    transactionId, usedMetadataBlocks: space.metadataUsed, totalMetadataBlocks: space.metadataBlocks,
    usedDataBlocks: space.dataUsed, totalDataBlocks: space.dataBlocks, heldRoot, mode, discard, noSpacePolicy,
    needsCheck: md.needsCheck, modeReason: s.modeReason, metadataLowWatermark, line, dataBlockSize: table.dataBlockSize, lowWaterMark: table.lowWaterMark,
    dataFile: resolveDev(s.dir, table.dataDev), metadataFile: resolveDev(s.dir, table.metadataDev),
    backend: table.mode, hostFreeBytes, lockedBy: s.readOnly ? PoolLock.holder(s.dir) : process.pid,
  };
}

/** A thin target's status: mapped sectors and the highest mapped sector. */
export function thinStatus(s: PoolState, id: number): ThinStatus {
  const d = s.md.deviceDetails(id);
  const bs = s.table.dataBlockSize;
  const hi = s.md.highestMapped(id);
  const mappedSectors = d.mappedBlocks * bs;
  const highestMappedSector = hi === undefined ? undefined : (hi + 1) * bs - 1;
  return { id, size: s.deviceSize(id), mappedSectors, highestMappedSector, line: `${mappedSectors} ${highestMappedSector ?? '-'}` };
}
