/**
 * Sharing (snapshots of a whole tree): `tm.inc(root)` makes two owners of one tree; each
 * then mutates independently. Both must match their own models, shared nodes must be
 * copied only when written, and reference counts (metadata and value) must stay exact,
 * including after one owner deletes its tree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BTree } from '../../../src/pdata/btree/btree';
import { btreeNodeValidator, isLeaf, keyAt, maxEntries, nrEntries, searchLe, value64 } from '../../../src/pdata/btree/node';
import { assertMetaCounts, assertValueCounts, checkTrees, countingValue, fcOptions, Harness, TreeKind } from './tree-check';

const LEAF_SIZE = 400; // leaves of 9 entries and internal nodes of 6: deep trees from few keys
const INTERNAL = 6;
const KIND: TreeKind = { valueSize: LEAF_SIZE, countedValues: true };

interface Op { who: 0 | 1; t: 'ins' | 'rm' | 'range' | 'commit'; k: number; v: number; span: number }

const opArb: fc.Arbitrary<Op> = fc.record({
  who: fc.constantFrom<0 | 1>(0, 1),
  t: fc.constantFrom<Op['t']>('ins', 'ins', 'ins', 'rm', 'rm', 'rm', 'range', 'commit'),
  k: fc.integer({ min: 0, max: 1999 }),
  v: fc.integer({ min: 0, max: 60 }),
  span: fc.integer({ min: 1, max: 60 }),
});

function sorted(m: Map<number, number>): Array<[number, number]> {
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

test('two owners of one tree diverge independently with exact reference counts', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 30 }), fc.boolean(), fc.array(opArb, { minLength: 800, maxLength: 800 }), (seed, commitBeforeShare, ops) => {
      const h = new Harness(4096);
      const counts = new Map<number, number>();
      const vt = countingValue(LEAF_SIZE, counts);
      let tree = new BTree(h.tm, vt, { internalMaxEntries: INTERNAL });
      let s = seed;
      const rnd = () => { s = (s * 1103515245 + 12345) % 2 ** 31; return s / 2 ** 31; };
      const base = new Map<number, number>();
      let root = tree.empty();
      for (let i = 0; i < 800; i++) {
        const k = Math.floor(rnd() * 2000);
        const v = i % 60;
        if (base.get(k) !== v) vt.inc!(v);
        root = tree.insert(root, k, v);
        base.set(k, v);
      }
      if (commitBeforeShare) { h.commitAndReopen(); tree = new BTree(h.tm, vt, { internalMaxEntries: INTERNAL }); }
      h.tm.inc(root);
      const roots = [root, root];
      const models = [new Map(base), new Map(base)];

      const check = () => {
        const res = checkTrees(h.tm, roots.map((r) => ({ root: r, kind: KIND })), { exactParentKeys: true, internalMax: INTERNAL });
        assertMetaCounts(h.alloc, res.metaRefs);
        assertValueCounts(counts, res.valueRefs);
        for (const w of [0, 1]) assert.deepEqual([...tree.entries(roots[w])], sorted(models[w]));
      };
      check();
      for (const op of ops) {
        const m = models[op.who];
        switch (op.t) {
          case 'ins':
            if (m.get(op.k) !== op.v) vt.inc!(op.v);
            roots[op.who] = tree.insert(roots[op.who], op.k, op.v);
            m.set(op.k, op.v);
            break;
          case 'rm': {
            const r = tree.remove(roots[op.who], op.k);
            assert.equal(r.value, m.get(op.k));
            roots[op.who] = r.root;
            m.delete(op.k);
            break;
          }
          case 'range': {
            const r = tree.removeRange(roots[op.who], op.k, op.k + op.span);
            let want = 0;
            for (const k of [...m.keys()]) if (k >= op.k && k < op.k + op.span) { m.delete(k); want++; }
            assert.equal(r.removed, want);
            roots[op.who] = r.root;
            break;
          }
          case 'commit':
            check();
            h.commitAndReopen();
            tree = new BTree(h.tm, vt, { internalMaxEntries: INTERNAL });
            check();
            break;
        }
      }
      check();
      // One owner goes away: everything returns to exactly what the survivor needs.
      const gone = Math.floor(rnd() * 2);
      tree.del(roots[gone]);
      const survivor = roots[1 - gone];
      const res = checkTrees(h.tm, [{ root: survivor, kind: KIND }], { exactParentKeys: true, internalMax: INTERNAL });
      assertMetaCounts(h.alloc, res.metaRefs);
      assertValueCounts(counts, res.valueRefs);
      assert.deepEqual([...tree.entries(survivor)], sorted(models[1 - gone]));
      h.commitAndReopen();
      tree = new BTree(h.tm, vt, { internalMaxEntries: INTERNAL });
      tree.del(survivor);
      assertMetaCounts(h.alloc, new Map());
      assert.equal(counts.size, 0);
    }),
    fcOptions(4242, 12),
  );
});

/** Blocks on the lookup path of `key`, root first. */
function pathOf(h: Harness, root: number, key: number): number[] {
  const path: number[] = [];
  let b = root;
  for (;;) {
    path.push(b);
    const d = h.tm.read(b, btreeNodeValidator);
    if (isLeaf(d)) return path;
    b = value64(d, Math.max(0, searchLe(d, nrEntries(d), key)));
  }
}

function nodeImages(h: Harness, tree: BTree<number>, root: number): Map<number, string> {
  const m = new Map<number, string>();
  tree.walkNodes(root, (b, d) => { m.set(b, Buffer.from(d).toString('hex')); });
  return m;
}

test('a shared tree is copied only along the written path', () => {
  const h = new Harness(4096);
  const counts = new Map<number, number>();
  const vt = countingValue(LEAF_SIZE, counts);
  let tree = new BTree(h.tm, vt, { internalMaxEntries: INTERNAL });
  let root = tree.empty();
  for (let k = 0; k < 3000; k += 3) { vt.inc!(k % 7); root = tree.insert(root, k, k % 7); }
  for (let k = 0; k < 3000; k += 21) root = tree.remove(root, k).root; // leave room in leaves
  h.commitAndReopen();
  tree = new BTree(h.tm, vt, { internalMaxEntries: INTERNAL });
  h.tm.inc(root);
  const before = nodeImages(h, tree, root);
  // A key whose whole path has room, so the overwrite needs no split.
  let key = -1;
  for (let k = 3; k < 3000 && key < 0; k += 3) {
    const p = pathOf(h, root, k);
    if (p.every((b) => { const d = h.tm.read(b, btreeNodeValidator); return nrEntries(d) < maxEntries(d); }) && tree.lookup(root, k) !== undefined) key = k;
  }
  assert.ok(key >= 0);
  const path = pathOf(h, root, key);
  assert.ok(path.length >= 3, `a tree of depth >= 3 (got ${path.length})`);
  const allocated = h.alloc.allocated();
  vt.inc!(99);
  const a = tree.insert(root, key, 99);
  const b = root;
  assert.notEqual(a, b);
  assert.equal(h.alloc.allocated(), allocated + path.length, 'one new block per node on the path');
  // The other owner's nodes are all still there, byte for byte.
  assert.deepEqual(nodeImages(h, tree, b), before);
  const aNodes = nodeImages(h, tree, a);
  const onlyA = [...aNodes.keys()].filter((x) => !before.has(x));
  const onlyB = [...before.keys()].filter((x) => !aNodes.has(x));
  assert.equal(onlyA.length, path.length);
  assert.deepEqual(onlyB.sort(), [...path].sort());
  assert.equal(tree.lookup(a, key), 99);
  assert.equal(tree.lookup(b, key), key % 7);
  // Counts: the path's originals now have one owner each; their siblings two.
  const res = checkTrees(h.tm, [{ root: a, kind: KIND }, { root: b, kind: KIND }], { exactParentKeys: true, internalMax: INTERNAL });
  assertMetaCounts(h.alloc, res.metaRefs);
  assertValueCounts(counts, res.valueRefs);
  for (const x of path) assert.equal(h.alloc.count(x), 1);
  const d = h.tm.read(path[path.length - 2], btreeNodeValidator);
  for (let i = 0; i < nrEntries(d); i++) if (value64(d, i) !== path[path.length - 1]) assert.equal(h.alloc.count(value64(d, i)), 2);
  assert.ok(keyAt(d, 0) <= key);
});
