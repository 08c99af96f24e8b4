/**
 * The pool's one metadata snapshot (dm-thin's reserve_metadata_snap and
 * release_metadata_snap), for ThinMetadata.
 *
 * Contract:
 * - Taking it commits, copies the superblock into a new block (no space-map roots,
 *   no held root), adds one reference to the mapping tree's and the details tree's
 *   roots, records the copy as `held_root` and commits again (spec §8.1). The
 *   snapshot then shares every tree block with the live pool; copy-on-write keeps it
 *   as it was.
 * - Releasing it drops those references (tree blocks and the data blocks only the
 *   snapshot still maps are freed) and the copy's block, in the open transaction.
 * - E_METADATA_SNAP_EXISTS when one is held already, E_NO_METADATA_SNAP when none
 *   is; both change nothing.
 */
import { ThinError } from '../errors';
import { packSuperblock, snapshotSuperblockValidator, unpackSuperblock } from './format/superblock';
import type { MappingTree } from './mapping-tree';
import type { MetadataState } from './metadata-state';

/** Take the snapshot; returns the block of its superblock copy. */
export function reserveMetadataSnap(st: MetadataState): number {
  st.assertWritable();
  if (st.sb.heldRoot) {
    throw new ThinError('E_METADATA_SNAP_EXISTS', `a metadata snapshot is already held at block ${st.sb.heldRoot}; release it first`, { block: st.sb.heldRoot });
  }
  st.commit();
  const copy = st.tm.newBlock(snapshotSuperblockValidator);
  packSuperblock({ ...st.sb, blocknr: copy.location, dataSmRoot: undefined, metadataSmRoot: undefined, heldRoot: 0 }, copy.data);
  st.tm.inc(st.sb.dataMappingRoot);
  st.tm.inc(st.sb.deviceDetailsRoot);
  st.sb.heldRoot = copy.location;
  st.commit();
  return copy.location;
}

/** Release the held snapshot in the open transaction. */
export function releaseMetadataSnap(st: MetadataState, mappings: MappingTree): void {
  st.assertWritable();
  const at = st.sb.heldRoot;
  if (!at) throw new ThinError('E_NO_METADATA_SNAP', 'no metadata snapshot is held', {});
  const snap = unpackSuperblock(st.tm.read(at, snapshotSuperblockValidator));
  st.sb.heldRoot = 0;
  mappings.del(snap.dataMappingRoot);
  st.detailsTree.del(snap.deviceDetailsRoot);
  st.tm.dec(at);
}
