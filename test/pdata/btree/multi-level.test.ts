/**
 * The two-level mapping tree shape (device id -> subtree root -> virtual block ->
 * value) against a model of Map<device, Map<block, value>>, with snapshots that share
 * a device's whole subtree (tm.inc + insertSubtree, as the kernel's create_snap does),
 * device deletion, commits and reopening. Metadata counts must equal the references
 * found (subtree roots count from each distinct upper leaf) and value counts must equal
 * the entries of distinct bottom leaves. Changes go through both shapes of the API:
 * whole paths (`insert`, `remove`) and the split one dm-thin uses (`shadowPath`, then
 * `leafTree` on the subtree root, then `relink`), also while a copy of the top root is
 * held (a metadata snapshot), which must not change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isThinError } from '../../../src/errors';
import { MultiLevelBTree } from '../../../src/pdata/btree/multi-level';
import { assertMetaCounts, assertValueCounts, checkTrees, countingValue, fcOptions, Harness, TreeKind } from './tree-check';

const KIND: TreeKind = { valueSize: 8, lower: { valueSize: 24, countedValues: true } };

interface Op { t: 'ins' | 'pins' | 'rm' | 'prm' | 'range' | 'snap' | 'create' | 'delete' | 'look' | 'hold' | 'commit'; dev: number; dev2: number; k: number; v: number; span: number }

const opArb: fc.Arbitrary<Op> = fc.record({
  t: fc.constantFrom<Op['t']>('ins', 'ins', 'ins', 'pins', 'pins', 'pins', 'rm', 'prm', 'range', 'snap', 'create', 'delete', 'look', 'look', 'hold', 'commit'),
  dev: fc.integer({ min: 0, max: 7 }),
  dev2: fc.integer({ min: 0, max: 7 }),
  k: fc.integer({ min: 0, max: 1500 }),
  v: fc.integer({ min: 0, max: 80 }),
  span: fc.integer({ min: 1, max: 400 }),
});

test('two-level tree matches a model through snapshots, deletes and commits', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1500, maxLength: 1500 }), (ops) => {
      const h = new Harness(4096);
      const counts = new Map<number, number>();
      const vt = countingValue(24, counts);
      let ml = new MultiLevelBTree(h.tm, 2, vt);
      let root = ml.empty();
      const model = new Map<number, Map<number, number>>();
      // A held copy of the top root and what it held then (toggled by 'hold').
      let held: { root: number; model: Map<number, Map<number, number>> } | undefined;
      const matches = (r: number, want: Map<number, Map<number, number>>) => {
        assert.deepEqual([...ml.level(0).entries(r)].map(([d]) => d), [...want.keys()].sort((a, b) => a - b));
        for (const [dev, m] of want) {
          const sub = ml.subtree(r, [dev])!;
          assert.deepEqual([...ml.leafTree.entries(sub)], [...m.entries()].sort((a, b) => a[0] - b[0]));
        }
      };
      const check = () => {
        const roots = [{ root, kind: KIND }, ...(held ? [{ root: held.root, kind: KIND }] : [])];
        const res = checkTrees(h.tm, roots, { exactParentKeys: true });
        assertMetaCounts(h.alloc, res.metaRefs);
        assertValueCounts(counts, res.valueRefs);
        matches(root, model);
        if (held) matches(held.root, held.model);
      };
      for (const op of ops) {
        const m = model.get(op.dev);
        switch (op.t) {
          case 'ins': {
            if (m?.get(op.k) !== op.v) vt.inc!(op.v);
            root = ml.insert(root, [op.dev, op.k], op.v);
            if (m) m.set(op.k, op.v); else model.set(op.dev, new Map([[op.k, op.v]]));
            break;
          }
          case 'pins': {
            // dm-thin's shape: shadow the upper path, change the subtree, relink its root.
            const p = ml.shadowPath(root, [op.dev]);
            if (!m || !p) { assert.equal(p, undefined); break; }
            root = p.root;
            if (m.get(op.k) !== op.v) vt.inc!(op.v);
            const sub = ml.leafTree.insert(p.sub, op.k, op.v);
            if (sub !== p.sub) root = ml.relink(root, [op.dev], sub);
            m.set(op.k, op.v);
            break;
          }
          case 'prm': {
            const p = ml.shadowPath(root, [op.dev]);
            if (!m || !p) { assert.equal(p, undefined); break; }
            root = p.root;
            const r = ml.leafTree.remove(p.sub, op.k);
            assert.equal(r.value, m.get(op.k));
            if (r.root !== p.sub) root = ml.relink(root, [op.dev], r.root);
            m.delete(op.k);
            break;
          }
          case 'hold': {
            if (held) {
              ml.del(held.root);
              held = undefined;
            } else {
              h.tm.inc(root);
              held = { root, model: new Map([...model].map(([d, m2]) => [d, new Map(m2)])) };
            }
            break;
          }
          case 'rm': {
            const r = ml.remove(root, [op.dev, op.k]);
            assert.equal(r.value, m?.get(op.k));
            root = r.root;
            m?.delete(op.k);
            break;
          }
          case 'range': {
            const r = ml.removeRange(root, [op.dev], op.k, op.k + op.span);
            let want = 0;
            if (m) for (const k of [...m.keys()]) if (k >= op.k && k < op.k + op.span) { m.delete(k); want++; }
            assert.equal(r.removed, want);
            root = r.root;
            break;
          }
          case 'snap': {
            // create_snap: the new device shares the origin's subtree.
            if (!m || op.dev2 === op.dev) break;
            const sub = ml.subtree(root, [op.dev])!;
            h.tm.inc(sub);
            root = ml.insertSubtree(root, [op.dev2], sub);
            model.set(op.dev2, new Map(m));
            break;
          }
          case 'create': {
            if (model.has(op.dev)) break;
            root = ml.insertSubtree(root, [op.dev], ml.leafTree.empty());
            model.set(op.dev, new Map());
            break;
          }
          case 'delete': {
            const r = ml.removeSubtree(root, [op.dev]);
            assert.equal(r.removed, model.has(op.dev));
            root = r.root;
            model.delete(op.dev);
            break;
          }
          case 'look':
            assert.equal(ml.lookup(root, [op.dev, op.k]), m?.get(op.k));
            break;
          case 'commit':
            check();
            h.commitAndReopen();
            ml = new MultiLevelBTree(h.tm, 2, vt);
            check();
            break;
        }
      }
      check();
      if (held) ml.del(held.root);
      ml.del(root);
      assertMetaCounts(h.alloc, new Map());
      assert.equal(counts.size, 0);
    }),
    fcOptions(1234, 10),
  );
});

/** A two-level tree of counted 24-byte values over a fresh harness. */
function twoLevel(blocks: number) {
  const h = new Harness(blocks);
  const counts = new Map<number, number>();
  const vt = countingValue(24, counts);
  const ml = new MultiLevelBTree(h.tm, 2, vt);
  return { h, counts, vt, ml, root: ml.empty() };
}

test('a write to a snapshot copies the shared subtree path only', () => {
  const t = twoLevel(2048);
  const { h, counts, vt, ml } = t;
  let root = t.root;
  for (let k = 0; k < 1000; k++) { vt.inc!(k % 9); root = ml.insert(root, [1, k], k % 9); }
  h.commit();
  const origin = ml.subtree(root, [1])!;
  h.tm.inc(origin);
  root = ml.insertSubtree(root, [2], origin);
  assert.equal(ml.subtree(root, [2]), origin);
  assert.equal(h.alloc.count(origin), 2);
  vt.inc!(50);
  root = ml.insert(root, [2, 500], 50);
  assert.notEqual(ml.subtree(root, [2]), origin);
  assert.equal(ml.subtree(root, [1]), origin);
  assert.equal(h.alloc.count(origin), 1);
  assert.equal(ml.lookup(root, [1, 500]), 500 % 9);
  assert.equal(ml.lookup(root, [2, 500]), 50);
  const res = checkTrees(h.tm, [{ root, kind: KIND }], { exactParentKeys: true });
  assertMetaCounts(h.alloc, res.metaRefs);
  assertValueCounts(counts, res.valueRefs);
});

test('a held copy of the top root (metadata snapshot) is not disturbed by later writes', () => {
  // Like reserve_metadata_snap: commit, then inc the top root; the live tree moves on.
  const t = twoLevel(2048);
  const { h, counts, vt, ml } = t;
  let root = t.root;
  for (let d = 0; d < 3; d++) for (let k = 0; k < 600; k++) { vt.inc!(k % 5); root = ml.insert(root, [d, k], k % 5); }
  h.commit();
  const held = root;
  h.tm.inc(held);
  const dump = (r: number) => [0, 1, 2].map((d) => [...ml.leafTree.entries(ml.subtree(r, [d])!)]);
  const before = dump(held);
  for (let k = 0; k < 600; k += 7) { vt.inc!(77); root = ml.insert(root, [1, k], 77); }
  root = ml.removeSubtree(root, [2]).root;
  root = ml.removeRange(root, [0], 100, 300).root;
  assert.deepEqual(dump(held), before);
  const res = checkTrees(h.tm, [{ root, kind: KIND }, { root: held, kind: KIND }], { exactParentKeys: true });
  assertMetaCounts(h.alloc, res.metaRefs);
  assertValueCounts(counts, res.valueRefs);
  ml.del(held);
  const res2 = checkTrees(h.tm, [{ root, kind: KIND }], { exactParentKeys: true });
  assertMetaCounts(h.alloc, res2.metaRefs);
  assertValueCounts(counts, res2.valueRefs);
});

test('paths of the wrong length are refused', () => {
  const h = new Harness(64);
  const ml = new MultiLevelBTree(h.tm, 2, countingValue(8, new Map()));
  const root = ml.empty();
  const misuse = (f: () => unknown) => assert.throws(f, (e: unknown) => isThinError(e, 'E_INVALID'));
  misuse(() => ml.lookup(root, [1]));
  misuse(() => ml.insert(root, [1, 2, 3], 1));
  misuse(() => ml.subtree(root, [1, 2]));
  misuse(() => ml.removeSubtree(root, []));
  misuse(() => ml.shadowPath(root, [1, 2]));
  misuse(() => ml.relink(root, [], 5));
  assert.equal(ml.shadowPath(root, [1]), undefined);
  // A caller that relinks a path it never shadowed has lost track: thinsim's bug, not damage.
  assert.throws(() => ml.relink(root, [1], 5), (e: unknown) => isThinError(e, 'E_INVARIANT'));
  assert.equal(ml.lookup(root, [1, 2]), undefined);
  assert.deepEqual(ml.remove(root, [1, 2]), { root, value: undefined });
});
