/**
 * Streaming B-tree walks for the offline tools (dump, ls, delta): every leaf of a
 * tree in key order, read straight from the device in bulk, with no block cache.
 *
 * Contract:
 * - `leaves(root, valueSize)` yields each non-empty leaf once, in key order, through
 *   one reused LeafView (valid until the iterator moves). The tree must not change
 *   while it is walked (read-only tools on a quiescent device).
 * - Every node is validated as `BlockManager.read` would (checksum, blocknr, header)
 *   plus the tree's shape: leaves hold `valueSize`-byte values, internal nodes are
 *   non-empty, no deeper than MAX_BTREE_DEPTH. Damage throws E_CHECKSUM or E_CORRUPT
 *   naming the block, with `details.pathBlocks` (root first) and `details.path`.
 * - Memory is bounded by the tree's depth, not its size: the children of the node
 *   being walked at each level are read together (one pread per run of consecutive
 *   blocks, as restored trees lay them out) into a buffer reused for that level.
 *   Buffers come from a pool owned by the NodeStream, so walks may interleave (delta
 *   walks two devices side by side) and a pool of many devices allocates once.
 */
import { ThinError } from '../../errors';
import type { BlockDevice } from '../../io/block-device';
import { BLOCK_SIZE } from '../block-manager';
import { getU32 } from '../layout';
import { LeafView } from './lookup';
import {
  btreeNodeValidator, LEAF_NODE, MAX_BTREE_DEPTH, NODE_FLAGS, NODE_NR_ENTRIES, NODE_VALUE_SIZE, value64,
} from './node';

/** Children an internal node can hold (8-byte values): the most a level reads at once. */
const MAX_CHILDREN = Math.floor((BLOCK_SIZE - 32) / 16);

/** One level of a walk: the nodes read for it, and which one is next. */
interface Level {
  buf: Uint8Array;
  blocks: Float64Array;
  count: number;
  next: number;
}

export class NodeStream {
  private readonly free: Level[] = [];

  constructor(private readonly dev: BlockDevice) {}

  get nrBlocks(): number {
    return Math.floor(this.dev.size() / BLOCK_SIZE);
  }

  /** The leaves under `root` in key order (see the contract). */
  *leaves(root: number, valueSize: number): Generator<LeafView> {
    const view = new LeafView();
    const stack: Level[] = [];
    try {
      const top = this.take();
      stack.push(top);
      top.blocks[0] = root;
      top.count = 1;
      this.fill(top, stack);
      while (stack.length > 0) {
        const lv = stack[stack.length - 1];
        if (lv.next >= lv.count) { this.free.push(stack.pop()!); continue; }
        const i = lv.next++;
        const d = lv.buf.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
        const b = lv.blocks[i];
        const n = getU32(d, NODE_NR_ENTRIES);
        if (getU32(d, NODE_FLAGS) === LEAF_NODE) {
          const vs = getU32(d, NODE_VALUE_SIZE);
          if (vs !== valueSize) throw corrupt(b, `leaf with value_size ${vs}, this tree stores ${valueSize}-byte values`, stack);
          if (n === 0) continue;
          view.show(d);
          yield view;
          continue;
        }
        if (n === 0) throw corrupt(b, 'internal node with no entries', stack);
        if (stack.length > MAX_BTREE_DEPTH) throw corrupt(b, `reached at depth ${stack.length}, deeper than ${MAX_BTREE_DEPTH} levels (a cycle?)`, stack);
        const child = this.take();
        for (let j = 0; j < n; j++) child.blocks[j] = value64(d, j);
        child.count = n;
        stack.push(child);
        this.fill(child, stack);
      }
    } finally {
      // An early return (or an error) hands the level buffers back for the next walk.
      for (const lv of stack) this.free.push(lv);
    }
  }

  /** Read and validate the level's blocks: one pread per run of consecutive block numbers. */
  private fill(lv: Level, stack: readonly Level[]): void {
    const nr = this.nrBlocks;
    const { blocks, buf, count } = lv;
    for (let i = 0; i < count;) {
      const b = blocks[i];
      if (!(b > 0 && b < nr)) throw corrupt(b, `is outside the metadata device (${nr} blocks)`, stack, true);
      let j = i + 1;
      while (j < count && blocks[j] === blocks[j - 1] + 1 && blocks[j] < nr) j++;
      this.dev.read(buf.subarray(i * BLOCK_SIZE, j * BLOCK_SIZE), b * BLOCK_SIZE);
      i = j;
    }
    for (let i = 0; i < count; i++) {
      try {
        btreeNodeValidator.check(buf.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE), blocks[i]);
      } catch (e) {
        if (e instanceof ThinError) throw withPath(e, stack, blocks[i]);
        throw e;
      }
    }
  }

  private take(): Level {
    const lv = this.free.pop() ?? { buf: new Uint8Array(MAX_CHILDREN * BLOCK_SIZE), blocks: new Float64Array(MAX_CHILDREN), count: 0, next: 0 };
    lv.count = 0;
    lv.next = 0;
    return lv;
  }
}

/** The blocks from the root down to the node being read at the deepest level. */
function pathBlocks(stack: readonly Level[], last: number): number[] {
  const out: number[] = [];
  // Each level above the deepest is positioned just past the node it descended into.
  for (let k = 0; k < stack.length - 1; k++) out.push(stack[k].blocks[stack[k].next - 1]);
  out.push(last);
  return out;
}

function withPath(e: ThinError, stack: readonly Level[], b: number): ThinError {
  const blocks = pathBlocks(stack, b);
  const path = `blocks ${blocks.join(' -> ')}`;
  return new ThinError(e.code, `${e.message} (${path})`, { ...e.details, path, pathBlocks: blocks }, { cause: e });
}

function corrupt(b: number, what: string, stack: readonly Level[], reading = false): ThinError {
  const e = new ThinError('E_CORRUPT', `btree node (block ${b}): ${what}`, { block: b, kind: 'btree node' });
  if (reading) return withPath(e, stack, b);
  // The node at fault was already read: it is the deepest level's current one.
  const blocks: number[] = [];
  for (const lv of stack) blocks.push(lv.blocks[lv.next - 1]);
  const path = `blocks ${blocks.join(' -> ')}`;
  return new ThinError(e.code, `${e.message} (${path})`, { ...e.details, path, pathBlocks: blocks }, { cause: e });
}
