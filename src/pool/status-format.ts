/**
 * Status in the words of the real systems: the kernel's thin-pool status line
 * (dmsetup status), and the devicemapper section of `docker info`, whose sizes are
 * go-units HumanSize: decimal units, 4 significant digits ("107.4GB", "65.54kB").
 */
import type { PoolStatus } from './status';

export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

/** `docker info` "Storage Driver: devicemapper" fields, in Docker's order. */
export function dockerInfo(s: PoolStatus): Array<[string, string]> {
  const chunk = s.dataBlockSize * 512;
  const dataUsed = s.usedDataBlocks * chunk;
  const dataTotal = s.totalDataBlocks * chunk;
  let dataAvail = dataTotal - dataUsed;
  // Docker (loop-lvm): available is capped by the free space of the filesystem holding the loop file.
  if (s.backend === 'loop-lvm' && s.hostFreeBytes !== undefined) dataAvail = Math.min(dataAvail, s.hostFreeBytes);
  const metaUsed = s.usedMetadataBlocks * 4096;
  const metaTotal = s.totalMetadataBlocks * 4096;
  const rows: Array<[string, string]> = [
    ['Pool Blocksize', humanSize(chunk)],
    ['Data file', s.dataFile],
    ['Metadata file', s.metadataFile],
    ['Data Space Used', humanSize(dataUsed)],
    ['Data Space Total', humanSize(dataTotal)],
    ['Data Space Available', humanSize(dataAvail)],
    ['Metadata Space Used', humanSize(metaUsed)],
    ['Metadata Space Total', humanSize(metaTotal)],
    ['Metadata Space Available', humanSize(metaTotal - metaUsed)],
  ];
  if (s.backend === 'loop-lvm') {
    rows.push(['Data loop file', s.dataFile], ['Metadata loop file', s.metadataFile]);
  }
  return rows;
}

/** The kernel's fields, named. */
export function kernelFields(s: PoolStatus): Array<[string, string]> {
  return [
    ['transaction id', String(s.transactionId)],
    ['used/total metadata blocks', `${s.usedMetadataBlocks}/${s.totalMetadataBlocks}`],
    ['used/total data blocks', `${s.usedDataBlocks}/${s.totalDataBlocks}`],
    ['held metadata root', s.heldRoot ? String(s.heldRoot) : '-'],
    ['mode', s.mode],
    ['discard', s.discard],
    ['no space policy', s.noSpacePolicy],
    ['needs_check', s.needsCheck ? 'needs_check' : '-'],
    ['metadata low watermark', String(s.metadataLowWatermark)],
    ...(s.modeReason ? [['mode reason', s.modeReason] as [string, string]] : []),
  ];
}
