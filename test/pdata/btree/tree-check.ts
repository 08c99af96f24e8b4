/**
 * Test support for the btree suites: an independent structural checker that walks raw
 * node blocks (not the BTree code under test), a counting value type, and a harness
 * that reopens the metadata device through a fresh BlockManager after each commit.
 *
 * The checker recomputes metadata reference counts the way the spec's section 6.7 item 4
 * says (one count per root pointer, per child pointer of each distinct internal node,
 * per subtree-root value of each distinct upper leaf) and value references per distinct
 * bottom leaf, and checks every invariant of spec section 4.3 on the way.
 */
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../../src/io/memory-device';
import { BlockManager, BLOCK_SIZE } from '../../../src/pdata/block-manager';
import { TransactionManager } from '../../../src/pdata/transaction-manager';
import {
  btreeNodeValidator, isLeaf, keyAt, maxEntries, maxEntriesFor, nrEntries, value64, valueOffset, valueSize,
} from '../../../src/pdata/btree/node';
import type { ValueType } from '../../../src/pdata/btree/value-type';
import { getU32, getU64 } from '../../../src/pdata/layout';
import { MemoryAllocator } from '../../helpers/memory-allocator';

/** What a tree stores: leaf value size, and either a lower tree kind or counted values. */
export interface TreeKind {
  valueSize: number;
  /** Leaf values are roots of trees of this kind. */
  lower?: TreeKind;
  /** Leaf values hold a u64 id in their first 8 bytes that counts as a value reference. */
  countedValues?: boolean;
}

export interface CheckResult {
  metaRefs: Map<number, number>;
  valueRefs: Map<number, number>;
  nodes: number;
  leaves: number;
  leafEntries: number;
  /** Sum over leaves of max_entries (for fill factors). */
  leafCapacity: number;
  internalEntries: number;
  internalCapacity: number;
}

export interface CheckOptions {
  /** Expected internal max_entries (default 252; tests may build smaller ones). */
  internalMax?: number;
  /** Require parent key == first key of child (our writer), not just <=. */
  exactParentKeys?: boolean;
}

/**
 * Walk every tree in `roots`, check the invariants, and return the recomputed counts.
 * Throws an AssertionError naming the block on any violation.
 */
export function checkTrees(tm: TransactionManager, roots: Array<{ root: number; kind: TreeKind }>, opts: CheckOptions = {}): CheckResult {
  const res: CheckResult = {
    metaRefs: new Map(), valueRefs: new Map(), nodes: 0, leaves: 0, leafEntries: 0, leafCapacity: 0, internalEntries: 0, internalCapacity: 0,
  };
  const height = new Map<number, number>();
  const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);

  // Returns the node's height (leaf = 0), checking it is the same along every path.
  const visit = (b: number, kind: TreeKind, isRoot: boolean, lo: number, hi: number, depth: number): number => {
    assert.ok(depth <= 16, `block ${b}: deeper than 16`);
    const d = tm.read(b, btreeNodeValidator);
    const n = nrEntries(d);
    const max = maxEntries(d);
    const leaf = isLeaf(d);
    // Key order and bounds hold per path, so check them on every visit.
    for (let i = 0; i < n; i++) {
      const k = keyAt(d, i);
      if (i > 0) assert.ok(k > keyAt(d, i - 1), `block ${b}: keys out of order at ${i}`);
      assert.ok(k >= lo && k < hi, `block ${b}: key ${k} outside parent range [${lo}, ${hi})`);
    }
    if (!isRoot) {
      assert.ok(n >= Math.floor(max / 3), `block ${b}: ${n} entries, below max/3 (${max})`);
      if (opts.exactParentKeys) assert.equal(keyAt(d, 0), lo, `block ${b}: parent key ${lo} != first key ${keyAt(d, 0)}`);
    }
    const known = height.get(b);
    if (known !== undefined) return known;
    res.nodes++;
    let h = 0;
    if (leaf) {
      assert.equal(valueSize(d), kind.valueSize, `block ${b}: leaf value size`);
      assert.equal(max, maxEntriesFor(kind.valueSize), `block ${b}: leaf max_entries`);
      res.leaves++;
      res.leafEntries += n;
      res.leafCapacity += max;
      for (let i = 0; i < n; i++) {
        const o = valueOffset(d, i);
        if (kind.lower) {
          const sub = getU64(d, o, 'subtree root');
          bump(res.metaRefs, sub);
          visit(sub, kind.lower, true, 0, 2 ** 53, 0);
        } else if (kind.countedValues) {
          bump(res.valueRefs, getU64(d, o, 'value'));
        }
      }
    } else {
      assert.equal(valueSize(d), 8, `block ${b}: internal value size`);
      assert.equal(max, opts.internalMax ?? 252, `block ${b}: internal max_entries`);
      assert.ok(n >= 1, `block ${b}: empty internal node`);
      if (isRoot) assert.ok(n >= 2, `block ${b}: internal root with a single child`);
      res.internalEntries += n;
      res.internalCapacity += max;
      let childH = -1;
      for (let i = 0; i < n; i++) {
        const c = value64(d, i);
        bump(res.metaRefs, c);
        const ch = visit(c, kind, false, keyAt(d, i), i + 1 < n ? keyAt(d, i + 1) : hi, depth + 1);
        if (childH < 0) childH = ch;
        assert.equal(ch, childH, `block ${b}: children at different heights (leaves not at one depth)`);
      }
      h = childH + 1;
    }
    height.set(b, h);
    return h;
  };

  for (const r of roots) {
    bump(res.metaRefs, r.root);
    visit(r.root, r.kind, true, 0, 2 ** 53, 0);
  }
  return res;
}

/** Every block's allocator count equals the references found (block 0 is the superblock). */
export function assertMetaCounts(alloc: MemoryAllocator, refs: Map<number, number>): void {
  for (let b = 0; b < alloc.nrBlocks; b++) {
    const want = b === 0 ? 1 : refs.get(b) ?? 0;
    const got = alloc.count(b);
    if (got !== want) assert.fail(`metadata block ${b}: space map count ${got}, references found ${want}${want === 0 ? ' (leak)' : ''}`);
  }
}

/** Value references held by the counting type equal the references found in leaves. */
export function assertValueCounts(counter: Map<number, number>, refs: Map<number, number>): void {
  for (const [v, c] of counter) if (c !== (refs.get(v) ?? 0)) assert.fail(`value ${v}: counted ${c}, leaves hold ${refs.get(v) ?? 0}`);
  for (const [v, c] of refs) if (c !== (counter.get(v) ?? 0)) assert.fail(`value ${v}: leaves hold ${c}, counted ${counter.get(v) ?? 0}`);
}

/**
 * A value type of `size` bytes (>= 8) whose values are ids with references counted in
 * `counts`: inc/dec update the map (dec below zero throws), and the bytes after the id
 * are a pattern derived from it, so a misplaced or torn value is caught on read.
 */
export function countingValue(size: number, counts: Map<number, number>): ValueType<number> {
  const pattern = (id: number, j: number) => (id * 31 + j * 7 + 1) & 0xff;
  return {
    size,
    read(dv, o) {
      const id = dv.getUint32(o, true) + dv.getUint32(o + 4, true) * 2 ** 32;
      for (let j = 8; j < size; j++) if (dv.getUint8(o + j) !== pattern(id, j)) throw new Error(`value ${id}: byte ${j} is damaged`);
      return id;
    },
    write(dv, o, id) {
      dv.setUint32(o, id % 2 ** 32, true);
      dv.setUint32(o + 4, Math.floor(id / 2 ** 32), true);
      for (let j = 8; j < size; j++) dv.setUint8(o + j, pattern(id, j));
    },
    inc(id) { counts.set(id, (counts.get(id) ?? 0) + 1); },
    dec(id) {
      const c = counts.get(id) ?? 0;
      if (c <= 0) throw new Error(`value ${id} released more often than referenced`);
      if (c === 1) counts.delete(id); else counts.set(id, c - 1);
    },
    equal: (a, b) => a === b,
  };
}

/** A metadata device, allocator and transaction manager that can be reopened from disk. */
export class Harness {
  readonly dev: MemoryDevice;
  readonly alloc: MemoryAllocator;
  bm: BlockManager;
  tm: TransactionManager;

  constructor(nrBlocks = 4096, cacheBlocks?: number) {
    this.dev = new MemoryDevice(nrBlocks * BLOCK_SIZE);
    this.alloc = new MemoryAllocator(nrBlocks);
    this.bm = new BlockManager(this.dev, { cacheBlocks });
    this.tm = new TransactionManager(this.bm, this.alloc);
  }

  /** Write dirty blocks, snapshot the counts as committed. */
  commit(): void {
    this.tm.flushDirty();
    this.alloc.commitState();
  }

  /** A fresh BlockManager and TransactionManager over the same device (nothing flushed). */
  reopen(): TransactionManager {
    this.bm = new BlockManager(this.dev);
    this.tm = new TransactionManager(this.bm, this.alloc);
    return this.tm;
  }

  /** Raw bytes of block `b` as on the device. */
  rawBlock(b: number): Uint8Array {
    const d = new Uint8Array(BLOCK_SIZE);
    this.dev.read(d, b * BLOCK_SIZE);
    return d;
  }

  /** Overwrite block `b` on the device (bypassing every cache). */
  writeRaw(b: number, d: Uint8Array): void {
    this.dev.write(d, b * BLOCK_SIZE);
  }

  /** Commit, then forget every cached block: later reads come from the device and are validated. */
  commitAndReopen(): TransactionManager {
    this.commit();
    this.bm = new BlockManager(this.dev);
    this.tm = new TransactionManager(this.bm, this.alloc);
    return this.tm;
  }
}

/** Raw node header fields, for tests that poke at blocks. */
export function rawHeader(d: Uint8Array): { flags: number; nr: number; max: number; vs: number } {
  return { flags: getU32(d, 4), nr: getU32(d, 16), max: getU32(d, 20), vs: getU32(d, 24) };
}

/**
 * fast-check options: a fixed seed, so CI runs are repeatable. For a longer soak,
 * THINSIM_FC_SEED_OFFSET=k shifts every seed and THINSIM_FC_RUNS=x multiplies the runs;
 * THINSIM_FC_NO_SHRINK=1 reports the first failure as is.
 */
export function fcOptions(seed: number, numRuns: number): { seed: number; numRuns: number; endOnFailure: boolean; includeErrorInReport: boolean } {
  const offset = Number(process.env.THINSIM_FC_SEED_OFFSET ?? 0);
  const times = Number(process.env.THINSIM_FC_RUNS ?? 1);
  return {
    seed: seed + (Number.isInteger(offset) ? offset : 0),
    numRuns: Math.max(1, Math.round(numRuns * (times > 0 ? times : 1))),
    endOnFailure: process.env.THINSIM_FC_NO_SHRINK === '1',
    includeErrorInReport: true,
  };
}
