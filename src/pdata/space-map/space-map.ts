/**
 * Space maps: reference counts for every block of a device (spec §6).
 *
 * Contract (the kernel's dm_space_map, in userspace):
 * - Counts are exact 32-bit values; `nrAllocated` is the number of blocks with a
 *   non-zero count and is always exact (never read back from disk as truth).
 * - `allocate()` never returns a block that the last committed state references
 *   (freed blocks become reusable only after the commit that freed them).
 * - `commit()` folds the in-memory counts into metadata blocks through the
 *   transaction manager and returns the root to store in the superblock. Order at
 *   pool commit: data space map, then metadata space map, then the superblock;
 *   after the superblock is durable, `markCommitted()`.
 * - `extend(n)` grows the map; shrinking is not supported.
 * - Everything else is O(1) per call, except allocation, which scans the bitmap
 *   natively from a cursor.
 */
import type { SpaceMapRoot } from './sm-root';

export interface SpaceMap {
  readonly nrBlocks: number;
  readonly nrAllocated: number;
  count(b: number): number;
  inc(b: number): void;
  /** Returns the new count. */
  dec(b: number): number;
  allocate(): number;
  extend(nrBlocks: number): void;
  commit(): SpaceMapRoot;
  markCommitted(): void;
}
