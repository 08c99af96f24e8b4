/**
 * Superblock checks: decode the live superblock or a metadata-snapshot copy, and
 * check every field the kernel relies on (magic, version, feature flags, sizes, the
 * pool time, the metadata space map's size against the device).
 */
import type { Validator } from '../../pdata/block-manager';
import { checkDataBlockSize } from '../../units';
import { MAX_TIME } from '../format/block-time';
import { Superblock, SUPERBLOCK_FLAG_NEEDS_CHECK, THIN_MAGIC, unpackSuperblock } from '../format/superblock';
import type { CheckContext } from './context';

/** The superblock (or snapshot copy) at `b`, or undefined once reported. */
export function readSuperblock(ctx: CheckContext, b: number, v: Validator, what: string): Superblock | undefined {
  const data = ctx.readValid(b, v, what);
  if (!data) return undefined;
  try {
    return unpackSuperblock(data);
  } catch (e) {
    ctx.error(`${what} (block ${b}) cannot be decoded: ${(e as Error).message}`, b, what);
    return undefined;
  }
}

export function checkSuperblockFields(ctx: CheckContext, sb: Superblock, nrBlocks: number): void {
  const p = 'superblock';
  if (sb.magic !== THIN_MAGIC) ctx.error(`magic is ${sb.magic}, expected ${THIN_MAGIC}`, 0, p);
  if (sb.version !== 1 && sb.version !== 2) ctx.error(`version is ${sb.version}; dm-thin metadata is version 1 or 2`, 0, p);
  if (sb.incompatFlags) ctx.error(`unknown incompat_flags 0x${sb.incompatFlags.toString(16)}: the kernel refuses to open this pool`, 0, p);
  if (sb.compatRoFlags) ctx.error(`unknown compat_ro_flags 0x${sb.compatRoFlags.toString(16)}: the kernel opens this pool read-only only`, 0, p);
  if (sb.flags & SUPERBLOCK_FLAG_NEEDS_CHECK) ctx.warn('needs_check flag is set: a metadata operation failed; clear it after repair (thin_check --clear-needs-check-flag)', 0, p);
  if (sb.flags & ~SUPERBLOCK_FLAG_NEEDS_CHECK) ctx.warn(`unknown superblock flags 0x${sb.flags.toString(16)}`, 0, p);
  if (sb.metadataBlockSize !== 8) ctx.error(`metadata_block_size is ${sb.metadataBlockSize} sectors, expected 8`, 0, p);
  try { checkDataBlockSize(sb.dataBlockSize); } catch (e) { ctx.error(`data_block_size: ${(e as Error).message}`, 0, p); }
  if (sb.time > MAX_TIME) ctx.error(`pool time ${sb.time} does not fit the 24-bit mapping time`, 0, p);
  if (sb.metadataSmRoot && sb.metadataSmRoot.nrBlocks > nrBlocks) {
    ctx.error(`metadata space map manages ${sb.metadataSmRoot.nrBlocks} blocks, but the device has ${nrBlocks}`, 0, p);
  }
  if (sb.metadataSmRoot && sb.metadataNrBlocks !== sb.metadataSmRoot.nrBlocks) {
    ctx.warn(`metadata_nr_blocks is ${sb.metadataNrBlocks} but the metadata space map manages ${sb.metadataSmRoot.nrBlocks} (normal after a metadata resize)`, 0, p);
  }
}
