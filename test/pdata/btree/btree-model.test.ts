/**
 * Property tests: random insert / overwrite / remove / removeRange / lookup sequences on
 * several value types against a Map model, committing (and reopening the device through
 * a fresh BlockManager) every few dozen operations. After each commit the tree must hold
 * exactly the model's entries in order and pass the structural checker, and every
 * metadata block's reference count (and every counted value's) must be exact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BTree, KEY_END } from '../../../src/pdata/btree/btree';
import { u32Value, u64Value, ValueType } from '../../../src/pdata/btree/value-type';
import { assertMetaCounts, assertValueCounts, checkTrees, countingValue, fcOptions, Harness, TreeKind } from './tree-check';

const TOP = 2 ** 53 - 1;

interface Op {
  t: 'ins' | 'rm' | 'range' | 'look' | 'commit';
  k: number;
  v: number;
  span: number;
}

type Phase = 'grow' | 'mixed' | 'shrink';
const MIX: Record<Phase, Op['t'][]> = {
  grow: ['ins', 'ins', 'ins', 'ins', 'ins', 'ins', 'ins', 'ins', 'rm', 'look', 'commit'],
  mixed: ['ins', 'ins', 'ins', 'ins', 'rm', 'rm', 'rm', 'look', 'look', 'range', 'commit'],
  shrink: ['ins', 'rm', 'rm', 'rm', 'rm', 'rm', 'rm', 'look', 'range', 'commit'],
};

function opArb(keySpace: number, valueMax: number, phase: Phase): fc.Arbitrary<Op> {
  const key = fc.oneof(
    { weight: 20, arbitrary: fc.integer({ min: 0, max: keySpace - 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: TOP - 50, max: TOP }) },
  );
  return fc.record({
    t: fc.constantFrom<Op['t']>(...MIX[phase]),
    k: key,
    v: fc.integer({ min: 0, max: valueMax }),
    span: fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 1, max: 20 }) },
      { weight: 2, arbitrary: fc.integer({ min: 1, max: keySpace >> 3 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: keySpace }) },
    ),
  });
}

interface Kind {
  name: string;
  size: number;
  counted: boolean;
  make(counts: Map<number, number>): ValueType<number>;
  valueMax: number;
  /** Small internal nodes for deep trees from few keys. */
  internalMax?: number;
  keySpace: number;
  ops: number;
  runs: number;
}

const KINDS: Kind[] = [
  { name: 'u64 (leaves 252)', size: 8, counted: false, make: () => u64Value, valueMax: TOP, keySpace: 6000, ops: 1500, runs: 4 },
  { name: 'u32 (leaves 336)', size: 4, counted: false, make: () => u32Value, valueMax: 2 ** 32 - 1, keySpace: 6000, ops: 1500, runs: 4 },
  { name: 'counted 8-byte (leaves 252)', size: 8, counted: true, make: (c) => countingValue(8, c), valueMax: 300, keySpace: 6000, ops: 1500, runs: 4 },
  { name: 'counted 24-byte (leaves 126)', size: 24, counted: true, make: (c) => countingValue(24, c), valueMax: 300, keySpace: 4000, ops: 1500, runs: 4 },
  { name: 'counted 1000-byte (leaves 3, internal 252)', size: 1000, counted: true, make: (c) => countingValue(1000, c), valueMax: 100, keySpace: 3000, ops: 2400, runs: 3 },
  { name: 'u64 (leaves 252, internal 6)', size: 8, counted: false, make: () => u64Value, valueMax: TOP, internalMax: 6, keySpace: 20000, ops: 2400, runs: 3 },
  { name: 'counted 400-byte (leaves 9, internal 6)', size: 400, counted: true, make: (c) => countingValue(400, c), valueMax: 100, internalMax: 6, keySpace: 1500, ops: 1500, runs: 6 },
  { name: 'counted 1000-byte (leaves 3, internal 6)', size: 1000, counted: true, make: (c) => countingValue(1000, c), valueMax: 100, internalMax: 6, keySpace: 800, ops: 1500, runs: 6 },
  { name: 'counted 1000-byte (leaves 3, internal 9)', size: 1000, counted: true, make: (c) => countingValue(1000, c), valueMax: 100, internalMax: 9, keySpace: 1500, ops: 1500, runs: 6 },
];

function sortedEntries(m: Map<number, number>): Array<[number, number]> {
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

function fullCheck(h: Harness, tree: BTree<number>, root: number, model: Map<number, number>, kind: Kind, counts: Map<number, number>): void {
  const treeKind: TreeKind = { valueSize: kind.size, countedValues: kind.counted };
  const res = checkTrees(h.tm, [{ root, kind: treeKind }], { exactParentKeys: true, internalMax: kind.internalMax });
  assertMetaCounts(h.alloc, res.metaRefs);
  if (kind.counted) assertValueCounts(counts, res.valueRefs);
  assert.equal(res.leafEntries, model.size);
  assert.deepEqual([...tree.entries(root)], sortedEntries(model));
  const keys = [...model.keys()];
  assert.equal(tree.highestKey(root), keys.length ? Math.max(...keys) : undefined);
  assert.equal(tree.lowestKey(root), keys.length ? Math.min(...keys) : undefined);
}

function run(kind: Kind, ops: Op[]): void {
  const h = new Harness(8192);
  const counts = new Map<number, number>();
  const vt = kind.make(counts);
  const opts = { internalMaxEntries: kind.internalMax };
  let tree = new BTree(h.tm, vt, opts);
  let root = tree.empty();
  const model = new Map<number, number>();
  for (const op of ops) {
    switch (op.t) {
      case 'ins': {
        // The tree takes over the caller's reference, except on an equal overwrite.
        if (model.get(op.k) !== op.v) vt.inc?.(op.v);
        root = tree.insert(root, op.k, op.v);
        model.set(op.k, op.v);
        break;
      }
      case 'rm': {
        const r = tree.remove(root, op.k);
        assert.equal(r.value, model.get(op.k));
        if (r.value === undefined) assert.equal(r.root, root, 'removing an absent key changes nothing');
        root = r.root;
        model.delete(op.k);
        break;
      }
      case 'range': {
        const to = Math.min(op.k + op.span, KEY_END);
        const r = tree.removeRange(root, op.k, to);
        let want = 0;
        for (const k of [...model.keys()]) if (k >= op.k && k < to) { model.delete(k); want++; }
        assert.equal(r.removed, want);
        root = r.root;
        break;
      }
      case 'look': {
        assert.equal(tree.lookup(root, op.k), model.get(op.k));
        let le: number | undefined;
        let ge: number | undefined;
        for (const k of model.keys()) {
          if (k <= op.k && (le === undefined || k > le)) le = k;
          if (k >= op.k && (ge === undefined || k < ge)) ge = k;
        }
        assert.deepEqual(tree.lookupLe(root, op.k), le === undefined ? undefined : [le, model.get(le)]);
        assert.deepEqual(tree.lookupGe(root, op.k), ge === undefined ? undefined : [ge, model.get(ge)]);
        break;
      }
      case 'commit': {
        fullCheck(h, tree, root, model, kind, counts);
        h.commitAndReopen();
        tree = new BTree(h.tm, vt, opts);
        fullCheck(h, tree, root, model, kind, counts);
        break;
      }
    }
  }
  fullCheck(h, tree, root, model, kind, counts);
  h.commitAndReopen();
  tree = new BTree(h.tm, vt, opts);
  fullCheck(h, tree, root, model, kind, counts);
  // Deleting the tree returns every block and every value reference.
  tree.del(root);
  assertMetaCounts(h.alloc, new Map());
  assert.equal(counts.size, 0, 'every value reference released');
}

let totalOps = 0;
for (const kind of KINDS) {
  test(`btree matches a Map model: ${kind.name}`, () => {
    const third = Math.floor(kind.ops / 3);
    const phase = (p: Phase) => fc.array(opArb(kind.keySpace, kind.valueMax, p), { minLength: third, maxLength: third });
    fc.assert(
      fc.property(fc.tuple(phase('grow'), phase('mixed'), phase('shrink')), ([a, b, c]) => {
        const ops = [...a, ...b, ...c];
        totalOps += ops.length;
        run(kind, ops);
      }),
      fcOptions(20241127, kind.runs),
    );
  });
}

test('operation count', (t) => { t.diagnostic(`random operations checked: ${totalOps}`); });

test('btree: dense sequential then random removal keeps every invariant', () => {
  // Build several levels with 3-entry leaves, then tear it down in random order.
  const kind = KINDS.find((k) => k.size === 1000 && k.internalMax === 6)!;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 }), (seed) => {
      const ops: Op[] = [];
      for (let k = 0; k < 1200; k++) ops.push({ t: 'ins', k, v: k % 50, span: 1 });
      let s = seed;
      const rnd = () => { s = (s * 1103515245 + 12345) % 2 ** 31; return s / 2 ** 31; };
      const order = Array.from({ length: 1200 }, (_, i) => i);
      for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
      for (let i = 0; i < order.length; i++) {
        ops.push({ t: 'rm', k: order[i], v: 0, span: 1 });
        if (i % 150 === 0) ops.push({ t: 'commit', k: 0, v: 0, span: 1 });
      }
      run(kind, ops);
    }),
    fcOptions(7, 4),
  );
});
