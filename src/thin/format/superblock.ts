/**
 * The dm-thin superblock (spec §3), block 0 of the metadata device; also the
 * layout of a metadata-snapshot copy (blocknr = its own location, space-map
 * roots zeroed).
 */
import { ThinError } from '../../errors';
import { saltedValidator } from '../../pdata/block-manager';
import { blob, getU64Unchecked, struct, u32, u64, view } from '../../pdata/layout';
import { packSmRoot, SpaceMapRoot, SM_ROOT_SIZE, unpackSmRoot, isZeroSmRoot } from '../../pdata/space-map/sm-root';

export const SUPERBLOCK_SALT = 160774;
export const THIN_MAGIC = 27022010;
export const THIN_VERSION = 2;
export const SUPERBLOCK_LOCATION = 0;
export const SUPERBLOCK_FLAG_NEEDS_CHECK = 1;
/** The superblock stays under one 512-byte sector so its write is atomic. */
export const SUPERBLOCK_SIZE = 0x16c;
const MAGIC_OFFSET = 32;

export interface Superblock {
  flags: number;
  blocknr: number;
  uuid: Uint8Array;
  magic: number;
  version: number;
  time: number;
  transactionId: number;
  /** Block of the held metadata snapshot, 0 if none (`held_root`, the tools' metadata_snap). */
  heldRoot: number;
  /** Undefined for a metadata-snapshot copy (area all zero). */
  dataSmRoot: SpaceMapRoot | undefined;
  metadataSmRoot: SpaceMapRoot | undefined;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  dataBlockSize: number;
  metadataBlockSize: number;
  metadataNrBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
  incompatFlags: number;
}

interface Raw {
  csum: number; flags: number; blocknr: number; uuid: Buffer; magic: number; version: number; time: number;
  transactionId: number; heldRoot: number; dataSm: Buffer; metadataSm: Buffer; dataMappingRoot: number;
  deviceDetailsRoot: number; dataBlockSize: number; metadataBlockSize: number; metadataNrBlocks: number;
  compatFlags: number; compatRoFlags: number; incompatFlags: number;
}

const LAYOUT = struct<Raw>([
  u32('csum'), u32('flags'), u64('blocknr'), blob(16, 'uuid'), u64('magic'), u32('version'), u32('time'),
  u64('transactionId'), u64('heldRoot'), blob(SM_ROOT_SIZE, 'dataSm'), blob(SM_ROOT_SIZE, 'metadataSm'),
  u64('dataMappingRoot'), u64('deviceDetailsRoot'), u32('dataBlockSize'), u32('metadataBlockSize'),
  u64('metadataNrBlocks'), u32('compatFlags'), u32('compatRoFlags'), u32('incompatFlags'),
]);

export function unpackSuperblock(data: Uint8Array): Superblock {
  const r = LAYOUT.decode(view(data, 0, SUPERBLOCK_SIZE));
  return {
    flags: r.flags, blocknr: r.blocknr, uuid: Uint8Array.from(r.uuid), magic: r.magic, version: r.version, time: r.time,
    transactionId: r.transactionId, heldRoot: r.heldRoot,
    dataSmRoot: isZeroSmRoot(r.dataSm) ? undefined : unpackSmRoot(r.dataSm),
    metadataSmRoot: isZeroSmRoot(r.metadataSm) ? undefined : unpackSmRoot(r.metadataSm),
    dataMappingRoot: r.dataMappingRoot, deviceDetailsRoot: r.deviceDetailsRoot, dataBlockSize: r.dataBlockSize,
    metadataBlockSize: r.metadataBlockSize, metadataNrBlocks: r.metadataNrBlocks, compatFlags: r.compatFlags,
    compatRoFlags: r.compatRoFlags, incompatFlags: r.incompatFlags,
  };
}

/** Pack into a fresh 4096-byte block (checksum is stamped by the validator on write). */
export function packSuperblock(sb: Superblock, out: Uint8Array = new Uint8Array(4096)): Uint8Array {
  out.fill(0);
  const dataSm = Buffer.alloc(SM_ROOT_SIZE);
  const metaSm = Buffer.alloc(SM_ROOT_SIZE);
  if (sb.dataSmRoot) packSmRoot(sb.dataSmRoot, dataSm);
  if (sb.metadataSmRoot) packSmRoot(sb.metadataSmRoot, metaSm);
  LAYOUT.encode({
    csum: 0, flags: sb.flags, blocknr: sb.blocknr, uuid: Buffer.from(sb.uuid.subarray(0, 16)), magic: sb.magic,
    version: sb.version, time: sb.time, transactionId: sb.transactionId, heldRoot: sb.heldRoot, dataSm, metadataSm: metaSm,
    dataMappingRoot: sb.dataMappingRoot, deviceDetailsRoot: sb.deviceDetailsRoot, dataBlockSize: sb.dataBlockSize,
    metadataBlockSize: sb.metadataBlockSize, metadataNrBlocks: sb.metadataNrBlocks, compatFlags: sb.compatFlags,
    compatRoFlags: sb.compatRoFlags, incompatFlags: sb.incompatFlags,
  }, view(out, 0, SUPERBLOCK_SIZE));
  return out;
}

function checkMagic(data: Uint8Array, b: number): void {
  // Unchecked: any value beyond 2^53 is simply not the magic.
  const magic = getU64Unchecked(data, MAGIC_OFFSET);
  if (magic !== THIN_MAGIC) {
    throw new ThinError('E_CORRUPT', `superblock (block ${b}) has magic ${magic}, expected ${THIN_MAGIC}: this is not dm-thin metadata`, { block: b, kind: 'superblock' });
  }
}

/** The live superblock: checksum, blocknr 0 and magic. */
export const superblockValidator = saltedValidator('superblock', SUPERBLOCK_SALT, checkMagic);

/** A metadata-snapshot copy: blocknr is its own location. */
export const snapshotSuperblockValidator = saltedValidator('metadata snapshot superblock', SUPERBLOCK_SALT, checkMagic);

/** True when block 0 is all zeros: an unformatted metadata device (the kernel formats it). */
export function isUnformatted(block0: Uint8Array): boolean {
  for (let i = 0; i < block0.length; i++) if (block0[i] !== 0) return false;
  return true;
}

/** The superblock of a newly formatted pool (space-map roots come at its first commit). */
export function newSuperblock(dataBlockSize: number, metadataNrBlocks: number, dataMappingRoot: number, deviceDetailsRoot: number): Superblock {
  return {
    flags: 0, blocknr: SUPERBLOCK_LOCATION, uuid: new Uint8Array(16), magic: THIN_MAGIC, version: THIN_VERSION, time: 0, transactionId: 0,
    heldRoot: 0, dataSmRoot: undefined, metadataSmRoot: undefined, dataMappingRoot, deviceDetailsRoot,
    dataBlockSize, metadataBlockSize: 8, metadataNrBlocks, compatFlags: 0, compatRoFlags: 0, incompatFlags: 0,
  };
}

/** A deep copy (the uuid and space-map roots are not shared with `sb`). */
export function copySuperblock(sb: Superblock): Superblock {
  return {
    ...sb,
    uuid: Uint8Array.from(sb.uuid),
    dataSmRoot: sb.dataSmRoot && { ...sb.dataSmRoot },
    metadataSmRoot: sb.metadataSmRoot && { ...sb.metadataSmRoot },
  };
}

/**
 * Refuse a superblock thinsim must not open as asked: unknown incompatible features
 * (E_UNSUPPORTED), unknown compat_ro features unless read-only (E_READ_ONLY), a
 * metadata block size other than 4 KiB (E_CORRUPT).
 */
export function checkOpenable(sb: Superblock, name: string, readOnly: boolean): void {
  if (sb.incompatFlags !== 0) {
    throw new ThinError('E_UNSUPPORTED', `metadata ${name} has unknown incompat flags 0x${sb.incompatFlags.toString(16)}; thinsim cannot read it`, { file: name });
  }
  if (sb.compatRoFlags !== 0 && !readOnly) {
    throw new ThinError('E_READ_ONLY', `metadata ${name} has unknown compat_ro flags 0x${sb.compatRoFlags.toString(16)}; open it read-only`, { file: name });
  }
  if (sb.metadataBlockSize !== 8) {
    throw new ThinError('E_CORRUPT', `superblock metadata_block_size is ${sb.metadataBlockSize} sectors; dm-thin uses 8`, { block: 0, kind: 'superblock' });
  }
}
