/**
 * check: a full, independent check of dm-thin metadata, stricter than thin_check
 * 0.9.0 (spec §11.4, §12). It reads raw blocks and recomputes everything:
 *
 * - the superblock (checksum, blocknr, magic, version, feature flags, sizes);
 * - every btree node (checksum, blocknr, header, key order, key bounds from the
 *   parent, minimum fill of non-root nodes, equal leaf depth, value size per tree);
 * - metadata reference counts (spec §6.7), each node's pointers counted once per
 *   distinct referencing node, compared with the metadata space map for every block;
 * - data reference counts, one per entry of each distinct bottom-level leaf
 *   (subtrees shared by snapshots count once), compared with the data space map;
 * - the overflow trees against the 2-bit bitmaps, `nr_allocated` of both maps;
 * - details against the mapping tree: the same device ids, `mapped_blocks`;
 * - mappings past the data device, mapping times after the pool time;
 * - the held metadata snapshot, whose trees share nodes with the live ones;
 * - when the data device's size is given: that it holds nr_data_blocks blocks
 *   (a truncated data file loses the data of every block past its end).
 *
 * Contract: never throws for damaged metadata (each problem becomes a Finding with
 * the block and the tree path where it was found); throws only for I/O errors on
 * the device itself. Read-only. Memory: a byte per metadata block and per data
 * block (the reference tallies), the space maps' bitmaps as loaded, one entry per
 * distinct tree node (the visited set) and a small block cache; the data space
 * map's overflow tree is compared as it is walked, not loaded.
 *
 * Files: this one runs the check in order; check/context.ts holds the findings,
 * raw reads and reference tallies; check/superblock.ts the superblock fields;
 * check/walk.ts the tree walk (every tree, the pool's mapping and details trees);
 * check/space-maps.ts the space maps against the references found.
 */
import type { BlockDevice } from '../io/block-device';
import { ENTRIES_PER_BITMAP, nrBitmaps } from '../pdata/space-map/bitmap-block';
import { snapshotSuperblockValidator, superblockValidator } from './format/superblock';
import { CheckContext, Finding, Tally } from './check/context';
import { checkDataSpaceMap, checkMetadataSpaceMap } from './check/space-maps';
import { checkSuperblockFields, readSuperblock } from './check/superblock';
import { TreeWalker } from './check/walk';

export type { Finding, Severity } from './check/context';

export interface CheckOptions {
  /** Check the held metadata snapshot's trees as the root of the report (like thin_check -m). */
  metadataSnap?: boolean;
  /** Stop collecting after this many findings (default 1000). */
  maxFindings?: number;
  /** The pool's data device, to check it is as long as the metadata says. */
  dataDevice?: { name: string; bytes: number };
}

export interface CheckReport {
  ok: boolean;
  findings: Finding[];
  transactionId?: number;
  metadataBlocks: number;
  metadataFree?: number;
  devices: number;
  mappings: number;
  dataBlocks?: number;
  dataAllocated?: number;
}

export function checkMetadata(dev: BlockDevice, opts: CheckOptions = {}): CheckReport {
  const ctx = new CheckContext(dev, opts.maxFindings ?? 1000);
  const nrBlocks = ctx.bm.nrBlocks;
  const report: CheckReport = { ok: false, findings: ctx.findings, metadataBlocks: nrBlocks, devices: 0, mappings: 0 };
  if (nrBlocks < 1) {
    ctx.error(`metadata device is smaller than one 4 KiB block (${dev.size()} bytes): is this binary metadata?`);
    return report;
  }
  const sb = readSuperblock(ctx, 0, superblockValidator, 'superblock');
  if (!sb) return report;
  report.transactionId = sb.transactionId;
  checkSuperblockFields(ctx, sb, nrBlocks);
  ctx.metaRefs = new Tally(nrBlocks);
  ctx.metaRefs.inc(0);

  const msm = sb.metadataSmRoot;
  let dsm = sb.dataSmRoot;
  if (!msm) ctx.error('superblock has no metadata space map root', 0, 'superblock');
  if (!dsm) ctx.error('superblock has no data space map root', 0, 'superblock');
  // Every bitmap of the data space map is a metadata block: a claim of more data blocks
  // than the metadata device could describe is damage, reported once, and the check goes
  // on with what the device could hold (nothing is sized by the damaged number).
  const maxDataBlocks = nrBlocks * ENTRIES_PER_BITMAP;
  if (dsm && dsm.nrBlocks > maxDataBlocks) {
    ctx.error(`data space map claims ${dsm.nrBlocks} data blocks, which need ${nrBitmaps(dsm.nrBlocks)} bitmaps, more than the ${nrBlocks} blocks of the metadata device; the superblock's data space map root is damaged`, 0, 'superblock');
    dsm = { ...dsm, nrBlocks: maxDataBlocks };
  }
  const nrDataBlocks = dsm?.nrBlocks ?? 0;
  if (dsm && opts.dataDevice) checkDataDeviceSize(ctx, opts.dataDevice, nrDataBlocks, sb.dataBlockSize);
  ctx.dataRefs = new Tally(nrDataBlocks);
  const walker = new TreeWalker(ctx, sb.time);

  // Trees of the live superblock.
  const liveDevices = walker.checkPoolTrees(sb, 'live');
  // Held metadata snapshot: its copy block and both of its trees count.
  if (sb.heldRoot) {
    if (sb.heldRoot >= nrBlocks) {
      ctx.error(`held_root ${sb.heldRoot} is beyond the metadata device (${nrBlocks} blocks)`, 0, 'superblock');
    } else {
      ctx.metaRefs.inc(sb.heldRoot);
      const snap = readSuperblock(ctx, sb.heldRoot, snapshotSuperblockValidator, 'metadata snapshot');
      if (snap) {
        if (snap.dataSmRoot || snap.metadataSmRoot) ctx.warn('metadata snapshot copy has non-zero space map roots', sb.heldRoot, 'metadata snapshot');
        const snapDevices = walker.checkPoolTrees(snap, 'metadata snapshot');
        if (opts.metadataSnap) report.devices = snapDevices;
      }
    }
  } else if (opts.metadataSnap) {
    ctx.error('no metadata snapshot is held (held_root is 0)', 0, 'superblock');
  }
  if (!opts.metadataSnap) report.devices = liveDevices;

  // Space maps: their own blocks are references too, then the comparison.
  if (dsm) {
    const onDisk = checkDataSpaceMap(ctx, walker, dsm);
    if (onDisk) {
      report.dataBlocks = dsm.nrBlocks;
      report.dataAllocated = onDisk.nrAllocated;
    }
  }
  for (const b of ctx.dataRefs.beyond()) {
    ctx.error(`a mapping points at data block ${b}, beyond the data device (${nrDataBlocks} blocks)`, undefined, 'mapping tree');
  }
  if (msm) {
    const onDisk = checkMetadataSpaceMap(ctx, walker, msm);
    if (onDisk) report.metadataFree = msm.nrBlocks - onDisk.nrAllocated;
  }
  report.mappings = walker.mappings;
  report.ok = !ctx.findings.some((f: Finding) => f.severity === 'error');
  return report;
}

/** The data device must hold every block the data space map describes. */
function checkDataDeviceSize(ctx: CheckContext, dev: { name: string; bytes: number }, nrDataBlocks: number, dataBlockSize: number): void {
  const blockBytes = dataBlockSize * 512;
  const need = nrDataBlocks * blockBytes;
  if (dev.bytes >= need) return;
  const whole = Math.floor(dev.bytes / blockBytes);
  ctx.error(`data device ${dev.name} is ${dev.bytes} bytes (${whole} whole data blocks), shorter than the ${nrDataBlocks} data blocks of ${blockBytes} bytes the metadata describes (${need} bytes): it was truncated; blocks ${whole}..${nrDataBlocks - 1} are lost. Grow it back to ${need} bytes (truncate -s ${need}) to reuse the pool; their data is gone`, undefined, 'data device');
}
