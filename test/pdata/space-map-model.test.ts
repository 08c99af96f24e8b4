/**
 * Property test of both space maps against a plain Map model, across many commits:
 * random allocate / inc / dec (well past 3, into the overflow tree) / extend, then
 * commit, reopen from the on-disk roots through a fresh block manager, and require:
 * - every data count equals the model, and nr_allocated is exact;
 * - allocation never hands out a block the last commit still counts (shadow paging);
 * - the metadata space map counts exactly the blocks the two space maps use (its own
 *   index block, bitmaps and overflow tree; the data map's bitmaps, index tree and
 *   overflow tree; block 0) and nothing else: no leaks.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/io/memory-device';
import { BlockManager } from '../../src/pdata/block-manager';
import { BTree } from '../../src/pdata/btree/btree';
import { u32Value } from '../../src/pdata/btree/value-type';
import { ENTRIES_PER_BITMAP, nrBitmaps } from '../../src/pdata/space-map/bitmap-block';
import { DataSpaceMap } from '../../src/pdata/space-map/data-space-map';
import { indexEntryValue } from '../../src/pdata/space-map/index-entry-value';
import { readIndexBlock, indexBlockValidator } from '../../src/pdata/space-map/metadata-index-block';
import { MetadataSpaceMap } from '../../src/pdata/space-map/metadata-space-map';
import type { SpaceMapRoot } from '../../src/pdata/space-map/sm-root';
import { TransactionManager } from '../../src/pdata/transaction-manager';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
}

/** Blocks referenced by both space maps' on-disk structures (spec §6.7 items 1, 3, 5 and 4 for their trees). */
function referencedBlocks(tm: TransactionManager, meta: SpaceMapRoot, data: SpaceMapRoot): Map<number, number> {
  const refs = new Map<number, number>([[0, 1]]);
  const add = (b: number) => refs.set(b, (refs.get(b) ?? 0) + 1);
  add(meta.bitmapRoot);
  for (const e of readIndexBlock(tm.read(meta.bitmapRoot, indexBlockValidator), nrBitmaps(meta.nrBlocks))) add(e.blocknr);
  const overflow = new BTree(tm, u32Value);
  const index = new BTree(tm, indexEntryValue);
  const trees: Array<[number, BTree<unknown>]> = [[meta.refCountRoot, overflow], [data.refCountRoot, overflow], [data.bitmapRoot, index]];
  for (const [root, tree] of trees) {
    add(root);
    tree.walkNodes(root, (_b, d) => {
      // Child pointers of internal nodes: each is one reference.
      const n = new DataView(d.buffer, d.byteOffset).getUint32(16, true);
      if (new DataView(d.buffer, d.byteOffset).getUint32(4, true) === 1) {
        const max = new DataView(d.buffer, d.byteOffset).getUint32(20, true);
        for (let i = 0; i < n; i++) add(Number(new DataView(d.buffer, d.byteOffset).getBigUint64(32 + 8 * max + 8 * i, true)));
      }
    });
  }
  for (const [, e] of index.entries(data.bitmapRoot)) add(e.blocknr);
  return refs;
}

// Seeds 1-6: three bitmaps and growth. Seeds 7-10: a tiny data device, so the allocator
// wraps around and meets blocks freed in the same transaction many times.
for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) {
  const tiny = seed > 6;
  test(`space maps match a Map model across commits and reopen (seed ${seed}${tiny ? ', tiny data device' : ''})`, () => {
    const r = rng(seed);
    const dev = new MemoryDevice(1024 * 4096);
    let bm = new BlockManager(dev);
    let tm = new TransactionManager(bm);
    let msm = MetadataSpaceMap.format(tm, bm.nrBlocks);
    let nrData = tiny ? 150 : 2 * ENTRIES_PER_BITMAP + 777; // three bitmaps, the last partial
    let dsm = DataSpaceMap.format(tm, nrData);
    const model = new Map<number, number>();
    let committedNonZero = new Set<number>();
    // The rule is "a block freed in this transaction is not reused before the commit".
    let freedThisTxn = new Set<number>();
    const live = () => [...model.keys()];

    for (let commit = 0; commit < 25; commit++) {
      for (let op = 0; op < 400; op++) {
        const x = r();
        if (x < 0.35) {
          const b = dsm.tryAllocate();
          if (b < 0) { assert.equal(model.size + notYetReusable(model, committedNonZero, freedThisTxn), nrData, 'allocate failed while blocks were free'); continue; }
          assert.ok(!model.has(b), `allocate returned block ${b}, which is in use`);
          assert.ok(!committedNonZero.has(b), `allocate returned block ${b}, which the last commit still counts`);
          assert.ok(!freedThisTxn.has(b), `allocate returned block ${b}, freed earlier in this transaction`);
          model.set(b, 1);
        } else if (x < 0.7 && model.size > 0) {
          const ks = live();
          const b = ks[Math.floor(r() * ks.length)];
          const times = r() < 0.2 ? 1 + Math.floor(r() * 6) : 1;
          for (let i = 0; i < times; i++) { dsm.inc(b); model.set(b, model.get(b)! + 1); }
        } else if (x < 0.995 && model.size > 0) {
          const ks = live();
          const b = ks[Math.floor(r() * ks.length)];
          const n = dsm.dec(b);
          const m = model.get(b)! - 1;
          assert.equal(n, m, `dec of ${b}`);
          if (m === 0) { model.delete(b); freedThisTxn.add(b); } else model.set(b, m);
        } else if (!tiny) {
          nrData += Math.floor(r() * ENTRIES_PER_BITMAP);
          dsm.extend(nrData);
        }
      }
      const dataRoot = dsm.commit();
      const metaRoot = msm.commit();
      tm.flushDirty();
      dsm.markCommitted();
      msm.markCommitted();
      committedNonZero = new Set(model.keys());
      freedThisTxn = new Set();

      // Reopen from disk alone.
      bm = new BlockManager(dev);
      tm = new TransactionManager(bm);
      msm = MetadataSpaceMap.open(tm, metaRoot);
      dsm = DataSpaceMap.open(tm, dataRoot);
      assert.equal(dsm.nrBlocks, nrData);
      assert.equal(dsm.nrAllocated, model.size, 'data nr_allocated');
      assert.equal(dataRoot.nrAllocated, model.size, 'data nr_allocated in the root');
      for (let b = 0; b < nrData; b++) {
        const want = model.get(b) ?? 0;
        if (dsm.count(b) !== want) assert.fail(`seed ${seed} commit ${commit}: data block ${b} has count ${dsm.count(b)}, model ${want}`);
      }
      const refs = referencedBlocks(tm, metaRoot, dataRoot);
      let nonZero = 0;
      for (let b = 0; b < msm.nrBlocks; b++) {
        const want = refs.get(b) ?? 0;
        if (msm.count(b) !== want) assert.fail(`seed ${seed} commit ${commit}: metadata block ${b} has count ${msm.count(b)}, ${want} references`);
        if (want) nonZero++;
      }
      assert.equal(metaRoot.nrAllocated, nonZero, 'metadata nr_allocated is exact');
    }
  });
}

/** Blocks free now that cannot be allocated before the next commit. */
function notYetReusable(model: Map<number, number>, committed: Set<number>, freed: Set<number>): number {
  let n = 0;
  for (const b of new Set([...committed, ...freed])) if (!model.has(b)) n++;
  return n;
}
