/**
 * B-tree errors name where they were found, as thin-provisioning-tools does: the keys
 * sought at each level and the blocks from the top root down to the damaged node, in
 * `details.path` and the message ("path: [dev 3, key 42], blocks 3 -> 17 -> 25"). The
 * expected paths come from a small decoder written here from the spec (node layout,
 * superblock offsets), independent of src/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError, ThinError } from '../../../src/errors';
import { MemoryDevice } from '../../../src/io/memory-device';
import { BTree } from '../../../src/pdata/btree/btree';
import { u64Value } from '../../../src/pdata/btree/value-type';
import { mappingRuns } from '../../../src/thin/dump';
import { ThinMetadata } from '../../../src/thin/metadata';
import { Harness } from './tree-check';

const BS = 4096;

/** Node fields straight from the bytes (spec 4.1). */
function node(d: Uint8Array): { leaf: boolean; n: number; key(i: number): number; child(i: number): number } {
  const dv = new DataView(d.buffer, d.byteOffset, BS);
  const max = dv.getUint32(20, true);
  return {
    leaf: dv.getUint32(4, true) === 2,
    n: dv.getUint32(16, true),
    key: (i) => Number(dv.getBigUint64(32 + 8 * i, true)),
    child: (i) => Number(dv.getBigUint64(32 + 8 * max + 8 * i, true)),
  };
}

/** Blocks from `root` to the leaf that holds `key` (largest key <= `key` at each level). */
function pathTo(read: (b: number) => Uint8Array, root: number, key: number): number[] {
  const out = [root];
  for (let nd = node(read(root)); !nd.leaf;) {
    let i = 0;
    while (i + 1 < nd.n && nd.key(i + 1) <= key) i++;
    out.push(nd.child(i));
    nd = node(read(nd.child(i)));
  }
  return out;
}

function expectPath(f: () => unknown, code: string, keys: string, blocks: number[], device?: number): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isThinError(e), `a ThinError, got ${e}`);
    const te = e as ThinError;
    assert.equal(te.code, code, te.message);
    const path = `${keys}, blocks ${blocks.join(' -> ')}`;
    assert.equal(te.details.path, path, te.message);
    assert.deepEqual(te.details.pathBlocks, blocks);
    assert.equal(te.details.block, blocks[blocks.length - 1], 'details.block is still the failing node');
    assert.ok(te.message.endsWith(`path: ${path}`), te.message);
    if (device !== undefined) assert.equal(te.details.device, device);
    return true;
  });
}

test('a damaged node in a deep tree: lookup, insert, remove and iteration name the path from the root', () => {
  const h = new Harness(2048);
  let tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  let root = tree.empty();
  for (let k = 0; k < 6000; k += 2) root = tree.insert(root, k, k + 1);
  h.commitAndReopen();
  const read = (b: number) => h.rawBlock(b);
  const key = 4242;
  const want = pathTo(read, root, key);
  assert.ok(want.length >= 3, `a deep tree (${want.length} levels)`);
  const leaf = want[want.length - 1];
  const d = h.rawBlock(leaf);
  d[2000] ^= 0x10; // checksum left stale
  h.writeRaw(leaf, d);
  h.reopen();
  tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  expectPath(() => tree.lookup(root, key), 'E_CHECKSUM', `[key ${key}]`, want);
  expectPath(() => tree.insert(root, key + 1, 7), 'E_CHECKSUM', `[key ${key + 1}]`, want);
  expectPath(() => tree.remove(root, key), 'E_CHECKSUM', `[key ${key}]`, want);
  // Iteration names the last key it reached before the damaged leaf.
  assert.throws(() => [...tree.entries(root)], (e: unknown) => {
    const te = e as ThinError;
    assert.equal(te.code, 'E_CHECKSUM');
    assert.deepEqual(te.details.pathBlocks, want, te.message);
    return true;
  });
  assert.throws(() => tree.visitLeaves(root, () => {}), (e: unknown) => {
    assert.deepEqual((e as ThinError).details.pathBlocks, want, (e as Error).message);
    return true;
  });
  // Keys elsewhere still read.
  assert.equal(tree.lookup(root, 0), 1);
});

test('a damaged internal node: the path stops at it', () => {
  const h = new Harness(2048);
  let tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  let root = tree.empty();
  for (let k = 0; k < 6000; k += 2) root = tree.insert(root, k, k + 1);
  h.commitAndReopen();
  const key = 100;
  const want = pathTo((b) => h.rawBlock(b), root, key).slice(0, 2);
  const d = h.rawBlock(want[1]);
  d[300] ^= 1;
  h.writeRaw(want[1], d);
  h.reopen();
  tree = new BTree(h.tm, u64Value, { internalMaxEntries: 6 });
  expectPath(() => tree.lookup(root, key), 'E_CHECKSUM', `[key ${key}]`, want);
});

test('pool metadata: a damaged mapping leaf names the device, the key and blocks from the top-level root', () => {
  const dev = new MemoryDevice(64 * 1024 * 1024);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 200_000 });
  for (const id of [1, 3, 7]) md.createThin(id);
  for (let v = 0; v < 120_000; v++) md.insertMapping(3, v, md.allocateDataBlock());
  for (let v = 0; v < 50; v++) md.insertMapping(7, v, md.allocateDataBlock());
  md.commit();
  const image = dev.image();
  const read = (b: number) => image.subarray(b * BS, (b + 1) * BS);
  const topRoot = Number(new DataView(image.buffer).getBigUint64(0x140, true));
  const top = pathTo(read, topRoot, 3);
  const topLeaf = node(read(top[top.length - 1]));
  let sub = -1;
  for (let i = 0; i < topLeaf.n; i++) if (topLeaf.key(i) === 3) sub = topLeaf.child(i);
  const vblock = 77_777;
  const bottom = pathTo(read, sub, vblock);
  assert.ok(bottom.length >= 2, 'device 3 has an internal root');
  const leaf = bottom[bottom.length - 1];
  image[leaf * BS + 1500] ^= 0x80;
  const re = ThinMetadata.open(MemoryDevice.from(image), { cacheBlocks: 64 });
  const want = [...top, ...bottom];
  expectPath(() => re.lookup(3, vblock), 'E_CHECKSUM', `[dev 3, key ${vblock}]`, want, 3);
  assert.throws(() => [...mappingRuns(re, 3)], (e: unknown) => {
    const te = e as ThinError;
    assert.equal(te.code, 'E_CHECKSUM');
    assert.equal(te.details.device, 3);
    assert.deepEqual(te.details.pathBlocks, want, te.message);
    assert.match(te.message, /path: \[dev 3, key \d+\], blocks /);
    return true;
  });
  // Another device reads fine.
  assert.equal([...mappingRuns(re, 7)].reduce((n, r) => n + r.length, 0), 50);
});
