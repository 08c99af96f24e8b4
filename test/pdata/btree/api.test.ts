/** Edge cases of the BTree API: empty trees, argument checking, ranges, early stops. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError, ThinError } from '../../../src/errors';
import { BTree, KEY_END } from '../../../src/pdata/btree/btree';
import { btreeNodeValidator, isLeaf, nrEntries } from '../../../src/pdata/btree/node';
import { u64Value, type ValueType } from '../../../src/pdata/btree/value-type';
import { assertMetaCounts, checkTrees, Harness } from './tree-check';

test('an empty tree', () => {
  const h = new Harness(64);
  const t = new BTree(h.tm, u64Value);
  const r = t.empty();
  assert.equal(t.lookup(r, 0), undefined);
  assert.equal(t.lookupLe(r, 5), undefined);
  assert.equal(t.lookupGe(r, 5), undefined);
  assert.equal(t.lowerBound(r, 0), undefined);
  assert.equal(t.highestKey(r), undefined);
  assert.equal(t.lowestKey(r), undefined);
  assert.equal(t.count(r), 0);
  assert.deepEqual([...t.entries(r)], []);
  assert.deepEqual(t.remove(r, 3), { root: r, value: undefined });
  assert.deepEqual(t.removeRange(r, 0, KEY_END), { root: r, removed: 0 });
  assert.equal(t.modify(r, 1, (v) => v), undefined);
  const nodes: number[] = [];
  t.walkNodes(r, (b, d, depth) => { nodes.push(b); assert.ok(isLeaf(d)); assert.equal(depth, 0); assert.equal(nrEntries(d), 0); });
  assert.deepEqual(nodes, [r]);
  h.commitAndReopen();
  const t2 = new BTree(h.tm, u64Value);
  assert.equal(t2.lookup(r, 0), undefined);
  t2.del(r);
  assertMetaCounts(h.alloc, new Map());
});

test('keys must be whole numbers from 0 to 2^53-1', () => {
  const h = new Harness(64);
  const t = new BTree(h.tm, u64Value);
  const r = t.empty();
  assert.throws(() => t.insert(r, 2 ** 53, 1), (e: unknown) => isThinError(e, 'E_RANGE'));
  assert.throws(() => t.insert(r, -1, 1), (e: unknown) => isThinError(e, 'E_INVALID'));
  assert.throws(() => t.lookup(r, 1.5), (e: unknown) => isThinError(e, 'E_INVALID'));
  assert.throws(() => t.insert(r, 1, 2 ** 60), (e: unknown) => isThinError(e, 'E_RANGE'));
  // A refused value leaves the tree untouched (nothing was shadowed).
  assert.equal(h.tm.dirtyCount, 1);
  const r2 = t.insert(r, 2 ** 53 - 1, 7);
  assert.equal(t.lookup(r2, 2 ** 53 - 1), 7);
  assert.equal(t.highestKey(r2), 2 ** 53 - 1);
  assert.deepEqual(t.removeRange(r2, 0, KEY_END).removed, 1);
});

test('a value refused on the append path leaves the leaf as it was, free slot included', () => {
  // A 16-byte value whose write stores its first half before it checks the second, like
  // a struct of several fields: the refusal must not leave bytes behind past nr_entries.
  const pair: ValueType<[number, number]> = {
    size: 16,
    read: (dv, o) => [dv.getUint32(o, true), dv.getUint32(o + 8, true)],
    write: (dv, o, v) => {
      dv.setUint32(o, v[0], true);
      if (v[1] > 0xffff) throw new ThinError('E_RANGE', `second field ${v[1]} is too big`);
      dv.setUint32(o + 8, v[1], true);
    },
  };
  const h = new Harness(64);
  const t = new BTree(h.tm, pair);
  let r = t.empty();
  for (let k = 0; k < 10; k++) r = t.insert(r, k, [k, k]);
  const leaf = Uint8Array.from(h.tm.read(r, btreeNodeValidator));
  assert.throws(() => t.insert(r, 10, [7, 0x10000]), (e: unknown) => isThinError(e, 'E_RANGE'));
  assert.deepEqual(h.tm.read(r, btreeNodeValidator), leaf, 'the leaf bytes, free slots included, are unchanged');
  assert.equal(t.lookup(r, 10), undefined);
  r = t.insert(r, 10, [7, 8]);
  assert.deepEqual([...t.entries(r, 9)], [[9, [9, 9]], [10, [7, 8]]]);
});

test('leaves pulls the non-empty leaves in key order, values in place', () => {
  const h = new Harness(512);
  const t = new BTree(h.tm, u64Value);
  let r = t.empty();
  assert.deepEqual([...t.leaves(r)], [], 'an empty tree has no non-empty leaf');
  const want: Array<[number, number]> = [];
  for (let k = 0; k < 3000; k += 3) { r = t.insert(r, k, k + 1); want.push([k, k + 1]); }
  for (let k = 900; k < 1200; k += 3) r = t.remove(r, k).root;
  const got: Array<[number, number]> = [];
  let leaves = 0;
  for (const leaf of t.leaves(r)) {
    leaves++;
    assert.ok(leaf.count > 0);
    const dv = new DataView(leaf.bytes.buffer, leaf.bytes.byteOffset, leaf.bytes.byteLength);
    for (let i = 0; i < leaf.count; i++) got.push([leaf.key(i), u64Value.read(dv, leaf.valueOffset(i))]);
  }
  assert.ok(leaves > 3, `${leaves} leaves`);
  assert.deepEqual(got, want.filter(([k]) => k < 900 || k >= 1200));
});

test('ranges, iteration bounds, early stops and modify', () => {
  const h = new Harness(512);
  const t = new BTree(h.tm, u64Value);
  let r = t.empty();
  for (let k = 0; k < 20000; k += 2) r = t.insert(r, k, k * 10);
  assert.equal(t.count(r), 10000);
  assert.deepEqual([...t.entries(r, 101, 111)], [[102, 1020], [104, 1040], [106, 1060], [108, 1080], [110, 1100]]);
  assert.deepEqual([...t.entries(r, 19990)], [[19990, 199900], [19992, 199920], [19994, 199940], [19996, 199960], [19998, 199980]]);
  assert.deepEqual(t.lookupLe(r, 5001), [5000, 50000]);
  assert.deepEqual(t.lookupGe(r, 5001), [5002, 50020]);
  assert.equal(t.lowestKey(r), 0);
  assert.equal(t.highestKey(r), 19998);
  let leaves = 0;
  assert.equal(t.visitLeaves(r, () => { leaves++; return leaves < 3 ? undefined : false; }), false);
  assert.equal(leaves, 3);
  // modify hands references over without inc/dec.
  r = t.modify(r, 4000, (v) => v + 1)!;
  assert.equal(t.lookup(r, 4000), 40001);
  // A range across many leaves.
  const res = t.removeRange(r, 3001, 15001);
  assert.equal(res.removed, 6000);
  r = res.root;
  assert.equal(t.count(r), 4000);
  assert.deepEqual(t.lookupGe(r, 3001), [15002, 150020]);
  assert.deepEqual(t.lookupLe(r, 15001), [3000, 30000]);
  checkTrees(h.tm, [{ root: r, kind: { valueSize: 8 } }], { exactParentKeys: true });
  // Empty ranges do nothing.
  assert.deepEqual(t.removeRange(r, 3001, 15001), { root: r, removed: 0 });
  assert.deepEqual(t.removeRange(r, 50, 50), { root: r, removed: 0 });
  // Everything, and the root collapses back to a single leaf.
  const all = t.removeRange(r, 0, KEY_END);
  assert.equal(all.removed, 4000);
  let depth = 0;
  t.walkNodes(all.root, (_b, _d, d) => { depth = Math.max(depth, d); });
  assert.equal(depth, 0);
  const c = checkTrees(h.tm, [{ root: all.root, kind: { valueSize: 8 } }]);
  assertMetaCounts(h.alloc, c.metaRefs);
});

test('del on a shared root only drops one reference', () => {
  const h = new Harness(512);
  const t = new BTree(h.tm, u64Value);
  let r = t.empty();
  for (let k = 0; k < 2000; k++) r = t.insert(r, k, k);
  h.commit();
  h.tm.inc(r);
  t.del(r);
  const c = checkTrees(h.tm, [{ root: r, kind: { valueSize: 8 } }]);
  assertMetaCounts(h.alloc, c.metaRefs);
  assert.equal(t.count(r), 2000);
  t.del(r);
  assertMetaCounts(h.alloc, new Map());
  assert.throws(() => t.del(r), (e: unknown) => isThinError(e, 'E_CORRUPT'));
});

test('insertion below the smallest key lowers the bound along the spine', () => {
  const h = new Harness(1024);
  const t = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  let r = t.empty();
  for (let k = 100000; k < 103000; k++) r = t.insert(r, k, 1);
  for (let k = 99999; k >= 99000; k -= 7) r = t.insert(r, k, 2);
  checkTrees(h.tm, [{ root: r, kind: { valueSize: 8 } }], { exactParentKeys: true, internalMax: 6 });
  assert.equal(t.lowestKey(r), 99000 + ((99999 - 99000) % 7));
});
