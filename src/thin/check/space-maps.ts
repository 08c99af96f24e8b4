/**
 * Space-map checks: load both space maps through pdata's inspectors (which count
 * the blocks they are made of as metadata references, through this check's walk),
 * then compare every block's count with the references the walk found (spec 6.7),
 * the overflow trees with the 2-bit bitmaps, and `nr_allocated`.
 */
import { InspectedSpaceMap, inspectDataSpaceMap, inspectMetadataSpaceMap, SpaceMapReader } from '../../pdata/space-map/inspect';
import type { SpaceMapRoot } from '../../pdata/space-map/sm-root';
import { BLOCK_SIZE } from '../../pdata/block-manager';
import type { CheckContext, Tally } from './context';
import type { TreeWalker } from './walk';

/** Check the data space map; its counts, or undefined if it could not be loaded. */
export function checkDataSpaceMap(ctx: CheckContext, walker: TreeWalker, root: SpaceMapRoot): InspectedSpaceMap | undefined {
  const onDisk = inspectDataSpaceMap(root, reader(ctx, walker));
  if (onDisk) compare(ctx, 'data', onDisk, ctx.dataRefs, root);
  return onDisk;
}

/**
 * Check the metadata space map; its counts, or undefined if it could not be loaded.
 * Call it last: every other structure's blocks must have been counted.
 */
export function checkMetadataSpaceMap(ctx: CheckContext, walker: TreeWalker, root: SpaceMapRoot): InspectedSpaceMap | undefined {
  const onDisk = inspectMetadataSpaceMap(root, reader(ctx, walker));
  if (onDisk) compare(ctx, 'metadata', onDisk, ctx.metaRefs, root);
  return onDisk;
}

/**
 * How the space-map inspectors read, walk, count references and report, here. Their
 * bitmaps and index blocks are read into one reused buffer (the inspectors take what they
 * need of a block before the next read), so a large pool's bitmaps leave no garbage.
 */
function reader(ctx: CheckContext, walker: TreeWalker): SpaceMapReader {
  const scratch = new Uint8Array(BLOCK_SIZE);
  return {
    nrBlocks: ctx.bm.nrBlocks,
    refRoot: (b, path) => ctx.refRoot(b, path),
    ref: (b) => ctx.metaRefs.inc(b),
    read: (b, v, what, path) => ctx.readValid(b, v, what, path, scratch),
    walk: (root, kind, path, leaf) => { walker.walk(root, kind, path, (view, block) => leaf(view, block)); },
    error: (message, block, path) => ctx.error(message, block, path),
    warn: (message, block, path) => ctx.warn(message, block, path),
  };
}

/**
 * Compare on-disk counts with the recomputed references, block by block, in one pass
 * merged with the overflow entries (ascending), so no count is held per entry.
 */
function compare(ctx: CheckContext, which: 'data' | 'metadata', onDisk: InspectedSpaceMap, expected: Tally, root: SpaceMapRoot): void {
  const path = `${which} space map`;
  let nonZero = 0;
  let reported = 0;
  const one = (b: number, raw: number, overflow: number | undefined): void => {
    let disk = raw;
    if (raw === 3) {
      if (overflow === undefined) {
        ctx.error(`block ${b} has count 3+ in its bitmap but no entry in the reference count tree`, undefined, path);
        disk = 3;
      } else disk = overflow;
    } else if (overflow !== undefined) {
      ctx.error(`block ${b} has an overflow count ${overflow} but ${raw} in its bitmap`, undefined, path);
    }
    if (disk !== 0) nonZero++;
    const want = expected.get(b);
    if (disk !== want && reported++ < 100) {
      const kind = want === 0 ? 'leaked' : disk === 0 ? 'in use but marked free' : disk > want ? 'over-counted' : 'under-counted';
      ctx.error(`${which} block ${b} is ${kind}: reference count ${disk} in the space map, but ${want} references found`, undefined, path);
    }
  };
  let next = 0; // blocks below `next` are compared
  const upTo = (end: number): void => {
    for (let b = next; b < end; b++) one(b, onDisk.bitsGet(b), undefined);
    if (end > next) next = end;
  };
  onDisk.forEachOverflow((b, c) => {
    if (b < next) {
      ctx.error(`the reference count tree lists block ${b} out of order (after block ${next - 1})`, undefined, path);
      return;
    }
    upTo(b);
    one(b, onDisk.bitsGet(b), c);
    next = b + 1;
  });
  upTo(onDisk.nrBlocks);
  if (reported > 100) ctx.error(`... and ${reported - 100} more ${which} reference count differences`, undefined, path);
  if (root.nrAllocated !== nonZero) {
    const hint = which === 'metadata' && root.nrAllocated === nonZero + 1 ? ' (thin_restore 0.9.0 is known to write one too many; the kernel would report the wrong usage)' : '';
    ctx.error(`nr_allocated is ${root.nrAllocated}, but ${nonZero} blocks have a non-zero count${hint}`, 0, path);
  }
}
