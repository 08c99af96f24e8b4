/**
 * The tree walk: every node of the pool's trees (mapping tree, both levels; details
 * tree) and of the space maps' trees, validated once, with the rules the kernel's
 * trees keep: key order and bounds from the parent, minimum fill of non-root nodes,
 * equal leaf depth, the value size of each tree, no cycles. Pointers from each
 * distinct node count once as metadata references; each distinct bottom-level leaf
 * counts its data blocks once (subtrees shared by snapshots count once).
 *
 * Nodes are read through pdata's node API and LeafView; a damaged node becomes a
 * finding and its subtree is skipped.
 */
import { LeafView } from '../../pdata/btree/btree';
import {
  btreeNodeValidator, INTERNAL_VALUE_SIZE, isLeaf, keyAt, MAX_BTREE_DEPTH, maxEntries, maxEntriesFor, nrEntries, valueSize, value64,
} from '../../pdata/btree/node';
import { u64Value } from '../../pdata/btree/value-type';
import type { TreeKind } from '../../pdata/space-map/inspect';
import { BLOCK_TIME_SIZE, blockTimeTime } from '../format/block-time';
import { DEVICE_DETAILS_SIZE, deviceDetailsValue, DeviceDetails } from '../format/device-details';
import type { Superblock } from '../format/superblock';
import type { CheckContext } from './context';

/** Called once per distinct leaf; the view is valid only during the call. */
export type LeafFn = (leaf: LeafView, block: number, path: string) => void;

const MAPPING_TOP: TreeKind = { name: 'mapping tree (top level)', leafValueSize: 8 };
const MAPPING_BOTTOM: TreeKind = { name: 'mapping tree', leafValueSize: 8 };
const DETAILS: TreeKind = { name: 'device details tree', leafValueSize: DEVICE_DETAILS_SIZE };

export class TreeWalker {
  /**
   * What the walk remembers of each distinct node, in typed arrays indexed by block
   * (4 bytes per metadata block, whatever the number of mappings): its tree kind
   * (0: not visited), the depth of its leaves below it, and its leaf entry count
   * (leaves here; internal nodes, a few hundredth of the nodes, in a map).
   */
  private readonly kindOf: Uint8Array;
  private readonly leafDepthOf: Int8Array;
  private readonly leafEntries: Uint16Array;
  private readonly internalEntries = new Map<number, number>();
  private readonly kinds: TreeKind[] = [];
  private readonly leafView = new LeafView();
  /** Scratch: the children of one node to read ahead (copied out before recursing). */
  private readonly children: number[] = [];
  /** Walks in progress (a device's tree is walked from inside the top level's): read-ahead slots per nesting. */
  private nest = 0;
  /** Mappings of the live superblock's devices, shared subtrees counted per device. */
  mappings = 0;

  /** `sbTime`: the live pool time, after which no mapping may be. */
  constructor(private readonly ctx: CheckContext, private readonly sbTime: number) {
    const n = ctx.bm.nrBlocks;
    this.kindOf = new Uint8Array(n);
    this.leafDepthOf = new Int8Array(n);
    this.leafEntries = new Uint16Array(n);
  }

  private visited(b: number): boolean {
    return this.kindOf[b] !== 0;
  }

  /** Leaf entries under visited node `b` (undefined if it was not visited). */
  private entriesOf(b: number): number | undefined {
    if (!(b >= 0 && b < this.kindOf.length) || this.kindOf[b] === 0) return undefined;
    return this.leafDepthOf[b] === 0 ? this.leafEntries[b] : this.internalEntries.get(b) ?? 0;
  }

  /** Check the mapping and details trees of one superblock (live or snapshot); returns the device count. */
  checkPoolTrees(sb: Superblock, label: string): number {
    const topPath = `${label} > mapping tree`;
    const detPath = `${label} > details tree`;
    // Reference counting: every distinct node once (shared with the other superblock or not).
    this.ctx.refRoot(sb.dataMappingRoot, topPath);
    this.walk(sb.dataMappingRoot, MAPPING_TOP, topPath, (leaf, _b, path) => {
      const entries: Array<[number, number]> = [];
      for (let i = 0; i < leaf.count; i++) entries.push([leaf.key(i), leaf.value(i, u64Value)]);
      // The view is reused by the walks below: the entries were read first.
      for (const [dev, root] of entries) {
        const devPath = `${path} > device ${dev}`;
        if (!this.ctx.refRoot(root, devPath)) continue;
        this.walk(root, MAPPING_BOTTOM, devPath, (l, lb, lp) => this.mappingLeaf(l, lb, lp, dev));
      }
    });
    this.ctx.refRoot(sb.deviceDetailsRoot, detPath);
    this.walk(sb.deviceDetailsRoot, DETAILS, detPath, () => undefined);

    // This superblock's own view: its devices, their roots and details (shared nodes included).
    const topDevices = new Map<number, number | undefined>(); // dev -> mapped count
    this.collect(sb.dataMappingRoot, (leaf, i) => {
      const root = leaf.value(i, u64Value);
      topDevices.set(leaf.key(i), this.entriesOf(root));
    });
    const details = new Map<number, DeviceDetails>();
    this.collect(sb.deviceDetailsRoot, (leaf, i) => {
      details.set(leaf.key(i), leaf.value(i, deviceDetailsValue));
    });
    for (const [dev, det] of details) {
      const mapped = topDevices.get(dev);
      if (!topDevices.has(dev)) {
        this.ctx.error(`device ${dev} is in the details tree but not in the mapping tree`, undefined, detPath, dev);
      } else if (mapped !== undefined && det.mappedBlocks !== mapped) {
        this.ctx.error(`device ${dev} has mapped_blocks ${det.mappedBlocks} in its details, but ${mapped} mappings`, undefined, `${detPath} > device ${dev}`, dev);
      }
      if (det.creationTime > sb.time || det.snapshottedTime > sb.time) {
        this.ctx.error(`device ${dev} has creation_time ${det.creationTime} / snap_time ${det.snapshottedTime} after the pool time ${sb.time}`, undefined, `${detPath} > device ${dev}`, dev);
      }
    }
    if (label === 'live') for (const c of topDevices.values()) this.mappings += c ?? 0;
    for (const dev of topDevices.keys()) {
      if (!details.has(dev)) this.ctx.error(`device ${dev} is in the mapping tree but has no details`, undefined, topPath, dev);
    }
    return new Set([...details.keys(), ...topDevices.keys()]).size;
  }

  /**
   * Every leaf entry under `root`, shared nodes included, quietly skipping nodes the
   * counting walk already reported as damaged.
   */
  private collect(root: number, fn: (leaf: LeafView, i: number) => void, depth = 0): void {
    if (depth > MAX_BTREE_DEPTH || !(root > 0 && root < this.ctx.bm.nrBlocks)) return;
    let d: Uint8Array;
    try {
      d = this.ctx.bm.read(root, btreeNodeValidator);
    } catch {
      return;
    }
    const n = nrEntries(d);
    if (isLeaf(d)) {
      const leaf = new LeafView();
      leaf.show(d);
      for (let i = 0; i < n; i++) fn(leaf, i);
      return;
    }
    for (let i = 0; i < n; i++) this.collect(value64(d, i), fn, depth + 1);
  }

  private mappingLeaf(leaf: LeafView, block: number, path: string, dev: number): void {
    // The hot loop of a check: one pass over the leaf's block_time values, the data
    // block's tally bumped in place (format/block-time's layout, decoded inline).
    const bytes = leaf.bytes;
    const n = leaf.count;
    const tally = this.ctx.dataRefs;
    const bits = tally.bits;
    const fast = tally.fastLimit;
    let maxTime = 0;
    for (let i = 0, off = n > 0 ? leaf.valueOffset(0) : 0; i < n; i++, off += BLOCK_TIME_SIZE) {
      const b = ((bytes[off + 4] | (bytes[off + 5] << 8) | (bytes[off + 6] << 16) | (bytes[off + 7] << 24)) >>> 0) * 256 + bytes[off + 3];
      // Tally's in-place bump of a count below 3 (see tally.ts), else the general path.
      const q = b >>> 2;
      const s = (b & 3) << 1;
      if (b < fast && ((bits[q] >>> s) & 3) < 3) bits[q] += 1 << s;
      else tally.inc(b);
      const time = bytes[off] | (bytes[off + 1] << 8) | (bytes[off + 2] << 16);
      if (time > maxTime) maxTime = time;
    }
    if (maxTime <= this.sbTime) return;
    for (let i = 0; i < n; i++) {
      const time = blockTimeTime(bytes, leaf.valueOffset(i));
      if (time > this.sbTime) {
        this.ctx.error(`mapping of virtual block ${leaf.key(i)} has time ${time}, after the pool time ${this.sbTime}`, block, `${path} > block ${block}`, dev);
        return;
      }
    }
  }

  /**
   * Walk a tree, validating every node once. Pointers from each distinct node are
   * counted once. Calls `leaf` once per distinct leaf. Returns the number of leaf
   * entries under `root` (counting shared nodes again for each parent), or
   * undefined if the root is unreadable.
   */
  walk(root: number, kind: TreeKind, path: string, leaf: LeafFn): number | undefined {
    const leafDepths = new Set<number>();
    this.nest++;
    let count: number | undefined;
    try {
      count = this.visit(root, kind, `${path} > block ${root}`, leaf, 0, true, -1, Infinity, leafDepths, new Set());
    } finally {
      this.nest--;
    }
    if (leafDepths.size > 1) this.ctx.error(`leaves at different depths (${[...leafDepths].join(', ')})`, root, path);
    return count;
  }

  private visit(b: number, kind: TreeKind, path: string, leaf: LeafFn, depth: number, isRoot: boolean,
    lo: number, hi: number, leafDepths: Set<number>, onPath: Set<number>): number | undefined {
    const seenKind = b >= 0 && b < this.kindOf.length ? this.kindOf[b] : 0;
    if (seenKind !== 0) {
      const was = this.kinds[seenKind - 1];
      if (was !== kind) {
        this.ctx.error(`block ${b} is reached both as a node of the ${was.name} and of the ${kind.name}`, b, path);
        return undefined;
      }
      const ld = this.leafDepthOf[b];
      if (ld >= 0) leafDepths.add(depth + ld);
      return this.entriesOf(b);
    }
    if (onPath.has(b) || depth > MAX_BTREE_DEPTH) {
      this.ctx.error(`cycle or excessive depth at block ${b}`, b, path);
      return undefined;
    }
    const d = this.ctx.readValid(b, btreeNodeValidator, 'btree node', path);
    if (!d) return undefined;
    const n = nrEntries(d);
    const max = maxEntries(d);
    const vs = valueSize(d);
    const isLeafNode = isLeaf(d);
    const wantVs = isLeafNode ? kind.leafValueSize : INTERNAL_VALUE_SIZE;
    if (vs !== wantVs) {
      this.ctx.error(`value_size ${vs}, expected ${wantVs} for a ${isLeafNode ? 'leaf' : 'internal node'} of the ${kind.name}`, b, path);
      return undefined;
    }
    if (max !== maxEntriesFor(vs)) this.ctx.warn(`max_entries ${max}, the kernel uses ${maxEntriesFor(vs)} for value_size ${vs}`, b, path);
    if (!isRoot && n < Math.floor(max / 3)) this.ctx.error(`too few entries: ${n}, expected at least ${Math.floor(max / 3)} (max_entries ${max})`, b, path);
    if (isRoot && !isLeafNode && n === 0) this.ctx.error('internal root with no entries', b, path);
    if (n > 0) {
      const first = keyAt(d, 0);
      const last = keyAt(d, n - 1);
      if (first < lo) this.ctx.error(`first key ${first} is below its parent's key ${lo}`, b, path);
      if (last >= hi) this.ctx.error(`last key ${last} is not below the next parent key ${hi}`, b, path);
    }
    let entries = 0;
    let leafDepth = -1;
    if (isLeafNode) {
      leafDepths.add(depth);
      leafDepth = 0;
      entries = n;
      this.leafView.show(d);
      leaf(this.leafView, b, path);
    } else {
      onPath.add(b);
      const childDepths = new Set<number>();
      const ahead = this.children;
      let nAhead = 0;
      for (let i = 0; i < n; i++) {
        const child = value64(d, i);
        if (!(child > 0 && child < this.kindOf.length) || !this.visited(child)) ahead[nAhead++] = child;
      }
      this.ctx.prefetch(ahead, nAhead, this.nest * (MAX_BTREE_DEPTH + 2) + depth);
      for (let i = 0; i < n; i++) {
        const child = value64(d, i);
        if (!(child > 0 && child < this.ctx.bm.nrBlocks)) {
          this.ctx.error(`child pointer ${i} = ${child} is outside the metadata device`, b, path);
          continue;
        }
        this.ctx.metaRefs.inc(child);
        const cLo = keyAt(d, i);
        const cHi = i + 1 < n ? keyAt(d, i + 1) : hi;
        const c = this.visit(child, kind, `${path} > block ${child}`, leaf, depth + 1, false, cLo, cHi, childDepths, onPath);
        if (c !== undefined) entries += c;
      }
      onPath.delete(b);
      for (const cd of childDepths) leafDepths.add(cd);
      if (childDepths.size > 0) leafDepth = Math.max(...childDepths) - depth;
    }
    let k = this.kinds.indexOf(kind);
    if (k < 0) k = this.kinds.push(kind) - 1;
    this.kindOf[b] = k + 1;
    this.leafDepthOf[b] = leafDepth;
    if (leafDepth === 0) this.leafEntries[b] = entries;
    else this.internalEntries.set(b, entries);
    return entries;
  }
}
