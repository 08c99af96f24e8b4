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
 * - the held metadata snapshot, whose trees share nodes with the live ones.
 *
 * Contract: never throws for damaged metadata (each problem becomes a Finding with
 * the block and the tree path where it was found); throws only for I/O errors on
 * the device itself. Read-only. Memory: 4 bytes per metadata block and per data
 * block, plus the visited set.
 */
import { ThinError, isThinError } from '../errors';
import type { BlockDevice } from '../io/block-device';
import { BlockManager, Validator } from '../pdata/block-manager';
import { LeafView } from '../pdata/btree/btree';
import {
  btreeNodeValidator, INTERNAL_VALUE_SIZE, isLeaf, keyAt, MAX_BTREE_DEPTH, maxEntries, maxEntriesFor, nrEntries, valueSize, value64,
} from '../pdata/btree/node';
import { u64Value } from '../pdata/btree/value-type';
import {
  inspectDataSpaceMap, inspectMetadataSpaceMap, SpaceMapCounts, SpaceMapReader, TreeKind,
} from '../pdata/space-map/inspect';
import type { SpaceMapRoot } from '../pdata/space-map/sm-root';
import { checkDataBlockSize } from '../units';
import { blockTimeBlock, blockTimeTime, MAX_TIME } from './format/block-time';
import { DEVICE_DETAILS_SIZE, deviceDetailsValue, DeviceDetails } from './format/device-details';
import {
  snapshotSuperblockValidator, Superblock, superblockValidator, SUPERBLOCK_FLAG_NEEDS_CHECK, THIN_MAGIC, unpackSuperblock,
} from './format/superblock';

export type Severity = 'error' | 'warning';

export interface Finding {
  severity: Severity;
  message: string;
  block?: number;
  /** Where it was found, e.g. "mapping tree > device 3 > block 45". */
  path?: string;
  device?: number;
}

export interface CheckOptions {
  /** Check the held metadata snapshot's trees as the root of the report (like thin_check -m). */
  metadataSnap?: boolean;
  /** Stop collecting after this many findings (default 1000). */
  maxFindings?: number;
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

/** Called once per distinct leaf; the view is valid only during the call. */
type LeafFn = (leaf: LeafView, block: number, path: string) => void;

const MAPPING_TOP: TreeKind = { name: 'mapping tree (top level)', leafValueSize: 8 };
const MAPPING_BOTTOM: TreeKind = { name: 'mapping tree', leafValueSize: 8 };
const DETAILS: TreeKind = { name: 'device details tree', leafValueSize: DEVICE_DETAILS_SIZE };

/** Exact counts, dense while small, sparse beyond. */
class Tally {
  private dense: Uint32Array | undefined;
  private sparse = new Map<number, number>();
  constructor(readonly size: number) {
    if (size <= 1 << 27) this.dense = new Uint32Array(size);
  }
  inc(b: number): void {
    if (this.dense && b < this.size) this.dense[b]++;
    else this.sparse.set(b, (this.sparse.get(b) ?? 0) + 1);
  }
  get(b: number): number {
    return this.dense && b < this.size ? this.dense[b] : this.sparse.get(b) ?? 0;
  }
  /** Blocks at or beyond `size` that were counted (references past the end). */
  beyond(): number[] {
    return [...this.sparse.keys()].filter((b) => b >= this.size).sort((a, b) => a - b);
  }
}

export function checkMetadata(dev: BlockDevice, opts: CheckOptions = {}): CheckReport {
  return new Checker(dev, opts).run();
}

class Checker {
  private readonly bm: BlockManager;
  private readonly findings: Finding[] = [];
  private readonly max: number;
  private metaRefs!: Tally;
  private dataRefs!: Tally;
  private readonly visited = new Map<number, { leafDepth: number; entries: number; kind: TreeKind }>();
  private readonly leafView = new LeafView();
  private nrDataBlocks = 0;
  private sbTime = 0;
  private mappings = 0;

  constructor(dev: BlockDevice, opts: CheckOptions) {
    this.bm = new BlockManager(dev, { cacheBlocks: 1024 });
    this.max = opts.maxFindings ?? 1000;
    this.opts = opts;
  }

  private readonly opts: CheckOptions;

  run(): CheckReport {
    const nrBlocks = this.bm.nrBlocks;
    const report: CheckReport = { ok: false, findings: this.findings, metadataBlocks: nrBlocks, devices: 0, mappings: 0 };
    if (nrBlocks < 1) {
      this.error(`metadata device is smaller than one 4 KiB block (${this.bm.dev.size()} bytes): is this binary metadata?`);
      return report;
    }
    const sb = this.readSuperblock(0, superblockValidator, 'superblock');
    if (!sb) return report;
    report.transactionId = sb.transactionId;
    this.checkSuperblockFields(sb, nrBlocks);
    this.sbTime = sb.time;
    this.metaRefs = new Tally(nrBlocks);
    this.metaRefs.inc(0);

    const msm = sb.metadataSmRoot;
    const dsm = sb.dataSmRoot;
    if (!msm) this.error('superblock has no metadata space map root', 0, 'superblock');
    if (!dsm) this.error('superblock has no data space map root', 0, 'superblock');
    this.nrDataBlocks = dsm?.nrBlocks ?? 0;
    this.dataRefs = new Tally(this.nrDataBlocks);

    // Trees of the live superblock.
    const liveDevices = this.checkPoolTrees(sb, 'live');
    // Held metadata snapshot: its copy block and both of its trees count.
    if (sb.heldRoot) {
      if (sb.heldRoot >= nrBlocks) {
        this.error(`held_root ${sb.heldRoot} is beyond the metadata device (${nrBlocks} blocks)`, 0, 'superblock');
      } else {
        this.metaRefs.inc(sb.heldRoot);
        const snap = this.readSuperblock(sb.heldRoot, snapshotSuperblockValidator, 'metadata snapshot');
        if (snap) {
          if (snap.dataSmRoot || snap.metadataSmRoot) this.warn('metadata snapshot copy has non-zero space map roots', sb.heldRoot, 'metadata snapshot');
          const snapDevices = this.checkPoolTrees(snap, 'metadata snapshot');
          if (this.opts.metadataSnap) report.devices = snapDevices;
        }
      }
    } else if (this.opts.metadataSnap) {
      this.error('no metadata snapshot is held (held_root is 0)', 0, 'superblock');
    }
    if (!this.opts.metadataSnap) report.devices = liveDevices;

    // Space maps: their own blocks are references too, then the comparison.
    if (dsm) {
      const onDisk = inspectDataSpaceMap(dsm, this.smReader());
      if (onDisk) {
        this.compare('data', onDisk, this.dataRefs, dsm);
        report.dataBlocks = dsm.nrBlocks;
        report.dataAllocated = onDisk.nrAllocated;
      }
    }
    for (const b of this.dataRefs.beyond()) {
      this.error(`a mapping points at data block ${b}, beyond the data device (${this.nrDataBlocks} blocks)`, undefined, 'mapping tree');
    }
    if (msm) {
      const onDisk = inspectMetadataSpaceMap(msm, this.smReader());
      if (onDisk) {
        this.compare('metadata', onDisk, this.metaRefs, msm);
        report.metadataFree = msm.nrBlocks - onDisk.nrAllocated;
      }
    }
    report.mappings = this.mappings;
    report.ok = !this.findings.some((f) => f.severity === 'error');
    return report;
  }

  // ------------------------------------------------------------------ superblock

  private readSuperblock(b: number, v: Validator, what: string): Superblock | undefined {
    const data = this.readValid(b, v, what);
    if (!data) return undefined;
    try {
      return unpackSuperblock(data);
    } catch (e) {
      this.error(`${what} (block ${b}) cannot be decoded: ${(e as Error).message}`, b, what);
      return undefined;
    }
  }

  private checkSuperblockFields(sb: Superblock, nrBlocks: number): void {
    const p = 'superblock';
    if (sb.magic !== THIN_MAGIC) this.error(`magic is ${sb.magic}, expected ${THIN_MAGIC}`, 0, p);
    if (sb.version !== 1 && sb.version !== 2) this.error(`version is ${sb.version}; dm-thin metadata is version 1 or 2`, 0, p);
    if (sb.incompatFlags) this.error(`unknown incompat_flags 0x${sb.incompatFlags.toString(16)}: the kernel refuses to open this pool`, 0, p);
    if (sb.compatRoFlags) this.error(`unknown compat_ro_flags 0x${sb.compatRoFlags.toString(16)}: the kernel opens this pool read-only only`, 0, p);
    if (sb.flags & SUPERBLOCK_FLAG_NEEDS_CHECK) this.warn('needs_check flag is set: a metadata operation failed; clear it after repair (thin_check --clear-needs-check-flag)', 0, p);
    if (sb.flags & ~SUPERBLOCK_FLAG_NEEDS_CHECK) this.warn(`unknown superblock flags 0x${sb.flags.toString(16)}`, 0, p);
    if (sb.metadataBlockSize !== 8) this.error(`metadata_block_size is ${sb.metadataBlockSize} sectors, expected 8`, 0, p);
    try { checkDataBlockSize(sb.dataBlockSize); } catch (e) { this.error(`data_block_size: ${(e as Error).message}`, 0, p); }
    if (sb.time > MAX_TIME) this.error(`pool time ${sb.time} does not fit the 24-bit mapping time`, 0, p);
    if (sb.metadataSmRoot && sb.metadataSmRoot.nrBlocks > nrBlocks) {
      this.error(`metadata space map manages ${sb.metadataSmRoot.nrBlocks} blocks, but the device has ${nrBlocks}`, 0, p);
    }
    if (sb.metadataSmRoot && sb.metadataNrBlocks !== sb.metadataSmRoot.nrBlocks) {
      this.warn(`metadata_nr_blocks is ${sb.metadataNrBlocks} but the metadata space map manages ${sb.metadataSmRoot.nrBlocks} (normal after a metadata resize)`, 0, p);
    }
  }

  // ------------------------------------------------------------------ pool trees

  /** Check the mapping and details trees of one superblock (live or snapshot); returns the device count. */
  private checkPoolTrees(sb: Superblock, label: string): number {
    const topPath = `${label} > mapping tree`;
    const detPath = `${label} > details tree`;
    // Reference counting: every distinct node once (shared with the other superblock or not).
    this.refRoot(sb.dataMappingRoot, topPath);
    this.walk(sb.dataMappingRoot, MAPPING_TOP, topPath, (leaf, _b, path) => {
      const entries: Array<[number, number]> = [];
      for (let i = 0; i < leaf.count; i++) entries.push([leaf.key(i), leaf.value(i, u64Value)]);
      // The view is reused by the walks below: the entries were read first.
      for (const [dev, root] of entries) {
        const devPath = `${path} > device ${dev}`;
        if (!this.refRoot(root, devPath)) continue;
        this.walk(root, MAPPING_BOTTOM, devPath, (l, lb, lp) => this.mappingLeaf(l, lb, lp, dev));
      }
    });
    this.refRoot(sb.deviceDetailsRoot, detPath);
    this.walk(sb.deviceDetailsRoot, DETAILS, detPath, () => undefined);

    // This superblock's own view: its devices, their roots and details (shared nodes included).
    const topDevices = new Map<number, number | undefined>(); // dev -> mapped count
    this.collect(sb.dataMappingRoot, (leaf, i) => {
      const root = leaf.value(i, u64Value);
      topDevices.set(leaf.key(i), this.visited.get(root)?.entries);
    });
    const details = new Map<number, DeviceDetails>();
    this.collect(sb.deviceDetailsRoot, (leaf, i) => {
      details.set(leaf.key(i), leaf.value(i, deviceDetailsValue));
    });
    for (const [dev, det] of details) {
      const mapped = topDevices.get(dev);
      if (!topDevices.has(dev)) {
        this.error(`device ${dev} is in the details tree but not in the mapping tree`, undefined, detPath, dev);
      } else if (mapped !== undefined && det.mappedBlocks !== mapped) {
        this.error(`device ${dev} has mapped_blocks ${det.mappedBlocks} in its details, but ${mapped} mappings`, undefined, `${detPath} > device ${dev}`, dev);
      }
      if (det.creationTime > sb.time || det.snapshottedTime > sb.time) {
        this.error(`device ${dev} has creation_time ${det.creationTime} / snap_time ${det.snapshottedTime} after the pool time ${sb.time}`, undefined, `${detPath} > device ${dev}`, dev);
      }
    }
    if (label === 'live') for (const c of topDevices.values()) this.mappings += c ?? 0;
    for (const dev of topDevices.keys()) {
      if (!details.has(dev)) this.error(`device ${dev} is in the mapping tree but has no details`, undefined, topPath, dev);
    }
    return new Set([...details.keys(), ...topDevices.keys()]).size;
  }

  /**
   * Every leaf entry under `root`, shared nodes included, quietly skipping nodes the
   * counting walk already reported as damaged.
   */
  private collect(root: number, fn: (leaf: LeafView, i: number) => void, depth = 0): void {
    if (depth > MAX_BTREE_DEPTH || !(root > 0 && root < this.bm.nrBlocks)) return;
    let d: Uint8Array;
    try {
      d = this.bm.read(root, btreeNodeValidator);
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
    const bytes = leaf.bytes;
    let bad = 0;
    for (let i = 0; i < leaf.count; i++) {
      const off = leaf.valueOffset(i);
      this.dataRefs.inc(blockTimeBlock(bytes, off));
      const time = blockTimeTime(bytes, off);
      if (time > this.sbTime && bad++ === 0) {
        this.error(`mapping of virtual block ${leaf.key(i)} has time ${time}, after the pool time ${this.sbTime}`, block, `${path} > block ${block}`, dev);
      }
    }
  }

  /** Count a root pointer; false if it is outside the device. */
  private refRoot(b: number, path: string): boolean {
    if (!(b > 0 && b < this.bm.nrBlocks)) {
      this.error(`root ${b} is outside the metadata device (${this.bm.nrBlocks} blocks)`, b, path);
      return false;
    }
    this.metaRefs.inc(b);
    return true;
  }

  /**
   * Walk a tree, validating every node once. Pointers from each distinct node are
   * counted once. Calls `leaf` once per distinct leaf. Returns the number of leaf
   * entries under `root` (counting shared nodes again for each parent), or
   * undefined if the root is unreadable.
   */
  private walk(root: number, kind: TreeKind, path: string, leaf: LeafFn): number | undefined {
    const leafDepths = new Set<number>();
    const count = this.visit(root, kind, `${path} > block ${root}`, leaf, 0, true, -1, Infinity, leafDepths, new Set());
    if (leafDepths.size > 1) this.error(`leaves at different depths (${[...leafDepths].join(', ')})`, root, path);
    return count;
  }

  private visit(b: number, kind: TreeKind, path: string, leaf: LeafFn, depth: number, isRoot: boolean,
    lo: number, hi: number, leafDepths: Set<number>, onPath: Set<number>): number | undefined {
    const seen = this.visited.get(b);
    if (seen && seen.kind !== kind) {
      this.error(`block ${b} is reached both as a node of the ${seen.kind.name} and of the ${kind.name}`, b, path);
      return undefined;
    }
    if (seen) {
      if (seen.leafDepth >= 0) leafDepths.add(depth + seen.leafDepth);
      return seen.entries;
    }
    if (onPath.has(b) || depth > MAX_BTREE_DEPTH) {
      this.error(`cycle or excessive depth at block ${b}`, b, path);
      return undefined;
    }
    const d = this.readValid(b, btreeNodeValidator, 'btree node', path);
    if (!d) return undefined;
    const n = nrEntries(d);
    const max = maxEntries(d);
    const vs = valueSize(d);
    const isLeafNode = isLeaf(d);
    const wantVs = isLeafNode ? kind.leafValueSize : INTERNAL_VALUE_SIZE;
    if (vs !== wantVs) {
      this.error(`value_size ${vs}, expected ${wantVs} for a ${isLeafNode ? 'leaf' : 'internal node'} of the ${kind.name}`, b, path);
      return undefined;
    }
    if (max !== maxEntriesFor(vs)) this.warn(`max_entries ${max}, the kernel uses ${maxEntriesFor(vs)} for value_size ${vs}`, b, path);
    if (!isRoot && n < Math.floor(max / 3)) this.error(`too few entries: ${n}, expected at least ${Math.floor(max / 3)} (max_entries ${max})`, b, path);
    if (isRoot && !isLeafNode && n === 0) this.error('internal root with no entries', b, path);
    if (n > 0) {
      const first = keyAt(d, 0);
      const last = keyAt(d, n - 1);
      if (first < lo) this.error(`first key ${first} is below its parent's key ${lo}`, b, path);
      if (last >= hi) this.error(`last key ${last} is not below the next parent key ${hi}`, b, path);
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
      for (let i = 0; i < n; i++) {
        const child = value64(d, i);
        if (!(child > 0 && child < this.bm.nrBlocks)) {
          this.error(`child pointer ${i} = ${child} is outside the metadata device`, b, path);
          continue;
        }
        this.metaRefs.inc(child);
        const cLo = keyAt(d, i);
        const cHi = i + 1 < n ? keyAt(d, i + 1) : hi;
        const c = this.visit(child, kind, `${path} > block ${child}`, leaf, depth + 1, false, cLo, cHi, childDepths, onPath);
        if (c !== undefined) entries += c;
      }
      onPath.delete(b);
      for (const cd of childDepths) leafDepths.add(cd);
      if (childDepths.size > 0) leafDepth = Math.max(...childDepths) - depth;
    }
    this.visited.set(b, { leafDepth, entries, kind });
    return entries;
  }

  // ------------------------------------------------------------------ space maps

  /** How the space-map inspectors read, walk, count references and report, here. */
  private smReader(): SpaceMapReader {
    return {
      nrBlocks: this.bm.nrBlocks,
      refRoot: (b, path) => this.refRoot(b, path),
      ref: (b) => this.metaRefs.inc(b),
      read: (b, v, what, path) => this.readValid(b, v, what, path),
      walk: (root, kind, path, leaf) => { this.walk(root, kind, path, (view, block) => leaf(view, block)); },
      error: (message, block, path) => this.error(message, block, path),
      warn: (message, block, path) => this.warn(message, block, path),
    };
  }

  /** Compare on-disk counts with the recomputed references, block by block. */
  private compare(which: 'data' | 'metadata', onDisk: SpaceMapCounts, expected: Tally, root: SpaceMapRoot): void {
    const path = `${which} space map`;
    let nonZero = 0;
    let reported = 0;
    for (let b = 0; b < onDisk.nrBlocks; b++) {
      const raw = onDisk.bitsGet(b);
      let disk = raw;
      if (raw === 3) {
        const c = onDisk.overflowCount(b);
        if (c === undefined) {
          this.error(`block ${b} has count 3+ in its bitmap but no entry in the reference count tree`, undefined, path);
          disk = 3;
        } else disk = c;
      } else if (onDisk.overflowCount(b) !== undefined) {
        this.error(`block ${b} has an overflow count ${onDisk.overflowCount(b)} but ${raw} in its bitmap`, undefined, path);
      }
      if (disk !== 0) nonZero++;
      const want = expected.get(b);
      if (disk !== want && reported++ < 100) {
        const kind = want === 0 ? 'leaked' : disk === 0 ? 'in use but marked free' : disk > want ? 'over-counted' : 'under-counted';
        this.error(`${which} block ${b} is ${kind}: reference count ${disk} in the space map, but ${want} references found`, undefined, path);
      }
    }
    if (reported > 100) this.error(`... and ${reported - 100} more ${which} reference count differences`, undefined, path);
    if (root.nrAllocated !== nonZero) {
      const hint = which === 'metadata' && root.nrAllocated === nonZero + 1 ? ' (thin_restore 0.9.0 is known to write one too many; the kernel would report the wrong usage)' : '';
      this.error(`nr_allocated is ${root.nrAllocated}, but ${nonZero} blocks have a non-zero count${hint}`, 0, path);
    }
  }

  // ------------------------------------------------------------------ helpers

  private readValid(b: number, v: Validator, what: string, path?: string): Uint8Array | undefined {
    let d: Uint8Array;
    try {
      d = this.bm.readRaw(b);
    } catch (e) {
      if (isThinError(e) && e.code === 'E_CORRUPT') { this.error(`${what}: ${e.message}`, b, path); return undefined; }
      throw e;
    }
    try {
      v.check(d, b);
    } catch (e) {
      if (e instanceof ThinError) { this.error(e.message, b, path ?? what); return undefined; }
      throw e;
    }
    return d;
  }

  private error(message: string, block?: number, path?: string, device?: number): void {
    this.add({ severity: 'error', message, block, path, device });
  }

  private warn(message: string, block?: number, path?: string): void {
    this.add({ severity: 'warning', message, block, path });
  }

  private add(f: Finding): void {
    if (this.findings.length < this.max) this.findings.push(f);
    else if (f.severity === 'error' && !this.findings.some((x) => x.message.startsWith('too many findings'))) {
      this.findings.push({ severity: 'error', message: `too many findings; stopped listing after ${this.max}` });
    }
  }
}

