/**
 * Space-map root: the 128-byte area in the superblock describing one space map
 * (spec §6.2): nr_blocks, nr_allocated, bitmap_root, ref_count_root, 96 zero bytes.
 */
import { struct, u64, view } from '../layout';

export const SM_ROOT_SIZE = 128;

export interface SpaceMapRoot {
  nrBlocks: number;
  nrAllocated: number;
  /** Data sm: root of the index btree. Metadata sm: the index block. */
  bitmapRoot: number;
  /** Root of the overflow (ref count >= 3) btree. */
  refCountRoot: number;
}

const LAYOUT = struct<SpaceMapRoot>([u64('nrBlocks'), u64('nrAllocated'), u64('bitmapRoot'), u64('refCountRoot')]);

export function unpackSmRoot(area: Uint8Array): SpaceMapRoot {
  return LAYOUT.decode(view(area, 0, 32));
}

export function packSmRoot(root: SpaceMapRoot, area: Uint8Array): void {
  area.fill(0, 0, SM_ROOT_SIZE);
  LAYOUT.encode(root, view(area, 0, 32));
}

export function isZeroSmRoot(area: Uint8Array): boolean {
  for (let i = 0; i < SM_ROOT_SIZE; i++) if (area[i] !== 0) return false;
  return true;
}
