/**
 * Damaged trees: every kind of bad node must surface as a ThinError that names the
 * block (E_CHECKSUM for a bad checksum, E_CORRUPT for bad structure and for keys
 * beyond 2^53, which thinsim never writes), never as a crash, a wrong answer from a valid-looking path, or a loop.
 * Also what a reader must tolerate: stale bytes in unused slots, and parent keys lower
 * than their child's first key (what kernel removals leave).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError, ThinError } from '../../../src/errors';
import { BTree } from '../../../src/pdata/btree/btree';
import {
  btreeNodeValidator, isLeaf, keyAt, maxEntries, nrEntries, setKey, setValue64, value64, valueOffset,
} from '../../../src/pdata/btree/node';
import { u32Value, u64Value } from '../../../src/pdata/btree/value-type';
import { setU32 } from '../../../src/pdata/layout';
import { checkTrees, Harness } from './tree-check';

/** A committed 3-level u64 tree (small internal nodes) with keys 0, 2, 4, ... */
function build(): { h: Harness; root: number; tree: BTree<number>; leaves: number[]; internals: number[]; keys: number[] } {
  const h = new Harness(2048);
  let tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  let root = tree.empty();
  const keys: number[] = [];
  for (let k = 0; k < 6000; k += 2) { root = tree.insert(root, k, k + 1); keys.push(k); }
  h.commitAndReopen();
  tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  const leaves: number[] = [];
  const internals: number[] = [];
  tree.walkNodes(root, (b, d) => { (isLeaf(d) ? leaves : internals).push(b); });
  return { h, root, tree, leaves, internals, keys };
}

/** Rewrite block `b` on the device through `edit`, restamping the checksum unless told not to. */
function damage(h: Harness, b: number, edit: (d: Uint8Array) => void, restamp = true): void {
  const d = h.rawBlock(b);
  edit(d);
  if (restamp) btreeNodeValidator.prepare(d, b);
  h.writeRaw(b, d);
  h.reopen();
}

function expectError(f: () => unknown, code: string, block: number, what?: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isThinError(e), `a ThinError, got ${e}`);
    const te = e as ThinError;
    assert.equal(te.code, code, te.message);
    assert.equal(te.details.block, block, te.message);
    assert.match(te.message, new RegExp(`block ${block}\\b`));
    if (what) assert.match(te.message, what);
    return true;
  });
}

const firstKeyOf = (h: Harness, b: number) => keyAt(h.tm.read(b, btreeNodeValidator), 0);

test('a flipped byte in a leaf: lookup throws E_CHECKSUM naming the block', () => {
  const { h, root, leaves } = build();
  const leaf = leaves[3];
  const k = firstKeyOf(h, leaf);
  damage(h, leaf, (d) => { d[1000] ^= 0x40; }, false);
  const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  expectError(() => tree.lookup(root, k), 'E_CHECKSUM', leaf, /checksum/);
  // Keys on other paths still read.
  assert.equal(tree.lookup(root, 0), 1);
  expectError(() => [...tree.entries(root)], 'E_CHECKSUM', leaf);
  expectError(() => tree.visitLeaves(root, () => {}), 'E_CHECKSUM', leaf);
  expectError(() => tree.insert(root, k + 1, 1), 'E_CHECKSUM', leaf);
});

test('a flipped byte in the root and in an internal node', () => {
  for (const which of ['root', 'internal'] as const) {
    const { h, root, internals } = build();
    const b = which === 'root' ? root : internals[internals.length - 1];
    damage(h, b, (d) => { d[40] ^= 1; }, false);
    const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
    const errs: ThinError[] = [];
    for (let k = 0; k < 6000; k += 97) { try { tree.lookup(root, k); } catch (e) { errs.push(e as ThinError); } }
    assert.ok(errs.length > 0);
    for (const e of errs) { assert.equal(e.code, 'E_CHECKSUM'); assert.equal(e.details.block, b); }
  }
});

test('header damage with a valid checksum: E_CORRUPT naming the block and the fault', () => {
  const cases: Array<[string, (d: Uint8Array) => void, RegExp]> = [
    ['nr_entries > max_entries', (d) => setU32(d, 16, maxEntries(d) + 1), /nr_entries/],
    ['both flags', (d) => setU32(d, 4, 3), /flags/],
    ['no flags', (d) => setU32(d, 4, 0), /flags/],
    ['max_entries not a multiple of 3', (d) => setU32(d, 20, 250), /multiple of 3/],
    ['entries do not fit', (d) => setU32(d, 24, 100), /does not fit/],
    ['keys out of order', (d) => { const a = keyAt(d, 1); setKey(d, 1, keyAt(d, 2)); setKey(d, 2, a); }, /out of order/],
  ];
  for (const [name, edit, what] of cases) {
    const { h, root, leaves } = build();
    const leaf = leaves[5];
    const k = firstKeyOf(h, leaf);
    damage(h, leaf, edit);
    const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
    assert.ok(name);
    expectError(() => tree.lookup(root, k), 'E_CORRUPT', leaf, what);
  }
});

test('a node stored at the wrong block number', () => {
  const { h, root, leaves } = build();
  const [a, b] = [leaves[2], leaves[7]];
  const k = firstKeyOf(h, b);
  const copy = h.rawBlock(a); // stamped for block a
  h.writeRaw(b, copy);
  h.reopen();
  const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  expectError(() => tree.lookup(root, k), 'E_CORRUPT', b, /block nr/);
});

test('a cycle: lookup, walks, iteration and delete throw instead of looping', () => {
  const { h, root, internals } = build();
  // Point the last child of the deepest internal node back at the root.
  const inner = internals[internals.length - 1];
  let k = 0;
  damage(h, inner, (d) => { const n = nrEntries(d); k = keyAt(d, n - 1); setValue64(d, n - 1, root); });
  const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  const bad = (f: () => unknown) => assert.throws(f, (e: unknown) => isThinError(e, 'E_CORRUPT'));
  bad(() => tree.lookup(root, k));
  bad(() => tree.walkNodes(root, () => {}));
  bad(() => tree.visitLeaves(root, () => {}));
  bad(() => [...tree.entries(root)]);
  bad(() => tree.lookupLe(root, k + 1));
  bad(() => tree.highestKey(root));
  bad(() => tree.del(root));
});

test('a child pointer to itself and one past the end of the device', () => {
  {
    const { h, root, internals } = build();
    const inner = internals[internals.length - 1];
    let k = 0;
    damage(h, inner, (d) => { k = keyAt(d, 0); setValue64(d, 0, inner); });
    const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
    assert.throws(() => tree.lookup(root, k), (e: unknown) => isThinError(e, 'E_CORRUPT'));
  }
  {
    const { h, root, internals } = build();
    const inner = internals[internals.length - 1];
    let k = 0;
    damage(h, inner, (d) => { k = keyAt(d, 0); setValue64(d, 0, 10_000_000); });
    const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
    expectError(() => tree.lookup(root, k), 'E_CORRUPT', 10_000_000, /outside/);
  }
});

test('children swapped: keys outside the parent range are caught on the lookup path', () => {
  const { h, root, internals } = build();
  const inner = internals[internals.length - 1];
  let k = 0;
  let child = 0;
  damage(h, inner, (d) => {
    const a = value64(d, 0);
    setValue64(d, 0, value64(d, 1));
    setValue64(d, 1, a);
    k = keyAt(d, 0);
    child = value64(d, 0);
  });
  const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  expectError(() => tree.lookup(root, k), 'E_CORRUPT', child, /outside the parent/);
});

test('a leaf of the wrong value size for the tree', () => {
  const { h, root, leaves } = build();
  const tree32 = new BTree(h.tm, u32Value);
  expectError(() => tree32.lookup(root, 0), 'E_CORRUPT', leaves[0], /value_size/);
});

test('a key beyond 2^53 is reported as E_CORRUPT, never rounded', () => {
  const { h, root, leaves } = build();
  const last = leaves[leaves.length - 1];
  damage(h, last, (d) => { const n = nrEntries(d); setU32(d, 32 + 8 * (n - 1) + 4, 0x00400000); });
  const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  assert.equal(tree.lookup(root, 0), 1);
  assert.throws(() => [...tree.entries(root)], (e: unknown) => isThinError(e, 'E_CORRUPT'));
  assert.throws(() => tree.highestKey(root), (e: unknown) => isThinError(e, 'E_CORRUPT'));
});

test('readers ignore stale bytes in unused slots', () => {
  const { h, root, leaves, internals, keys } = build();
  for (const b of [...leaves, ...internals]) {
    damage(h, b, (d) => {
      const n = nrEntries(d);
      const max = maxEntries(d);
      for (let i = n; i < max; i++) { setKey(d, i, 0xdead + i); d.fill(0xa5, valueOffset(d, i), valueOffset(d, i + 1)); }
    });
  }
  const tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  assert.deepEqual([...tree.entries(root)], keys.map((k) => [k, k + 1]));
  for (const k of [0, 1, 2, 2999, 3000, 5998, 5999, 6000]) assert.equal(tree.lookup(root, k), k % 2 === 0 && k < 6000 ? k + 1 : undefined);
  // And writers keep working on top of them.
  let r = root;
  for (let k = 1; k < 6000; k += 50) r = tree.insert(r, k, k);
  for (let k = 0; k < 6000; k += 3) r = tree.remove(r, k).root;
  const want = new Map<number, number>();
  for (const k of keys) if (k % 3 !== 0) want.set(k, k + 1);
  for (let k = 1; k < 6000; k += 50) if (k % 3 !== 0) want.set(k, k);
  assert.deepEqual([...tree.entries(r)], [...want.entries()].sort((a, b) => a[0] - b[0]));
  checkTrees(h.tm, [{ root: r, kind: { valueSize: 8 } }], { internalMax: 6, exactParentKeys: true });
});

test('parent keys lower than the child first key (as kernel removals leave) read correctly', () => {
  const { h, root, internals } = build();
  // Lower every non-first parent key to one above the previous child's last key.
  for (const b of internals) {
    damage(h, b, (d) => {
      for (let i = 1; i < nrEntries(d); i++) {
        let c = h.tm.read(value64(d, i - 1), btreeNodeValidator);
        while (!isLeaf(c)) c = h.tm.read(value64(c, nrEntries(c) - 1), btreeNodeValidator);
        setKey(d, i, keyAt(c, nrEntries(c) - 1) + 1);
      }
    });
  }
  let tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  const model = new Map<number, number>();
  for (let k = 0; k < 6000; k += 2) model.set(k, k + 1);
  const check = (r: number) => {
    assert.deepEqual([...tree.entries(r)], [...model.entries()].sort((a, b) => a[0] - b[0]));
    const sorted = [...model.keys()].sort((a, b) => a - b);
    for (let k = 0; k < 6002; k += 1) {
      assert.equal(tree.lookup(r, k), model.get(k));
      const le = sorted.filter((x) => x <= k).pop();
      assert.deepEqual(tree.lookupLe(r, k), le === undefined ? undefined : [le, model.get(le)]);
      const ge = sorted.find((x) => x >= k);
      assert.deepEqual(tree.lookupGe(r, k), ge === undefined ? undefined : [ge, model.get(ge)]);
    }
  };
  check(root);
  // Writers work on such trees too (odd keys land in the gaps below a child's first key).
  let r = root;
  for (let k = 1; k < 6000; k += 14) { r = tree.insert(r, k, k); model.set(k, k); }
  for (let k = 0; k < 6000; k += 10) { r = tree.remove(r, k).root; model.delete(k); }
  check(r);
  checkTrees(h.tm, [{ root: r, kind: { valueSize: 8 } }], { internalMax: 6 });
  h.commitAndReopen();
  tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  check(r);
});
