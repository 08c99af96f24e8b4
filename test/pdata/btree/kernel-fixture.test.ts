/**
 * Reading kernel-written trees: the two-level mapping tree of each kernel fixture, read
 * through MultiLevelBTree, must hold exactly the mappings thin_dump prints, and every
 * tree must pass the structural checker (parent keys may be lower than a child's first
 * key here, as kernel removals leave them). Skips visibly without the tools or fixtures.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { MemoryDevice } from '../../../src/io/memory-device';
import { BlockManager } from '../../../src/pdata/block-manager';
import { TransactionManager } from '../../../src/pdata/transaction-manager';
import { MultiLevelBTree } from '../../../src/pdata/btree/multi-level';
import { getU64 } from '../../../src/pdata/layout';
import { u64Value } from '../../../src/pdata/btree/value-type';
import { MemoryAllocator } from '../../helpers/memory-allocator';
import { kernelFixture, skipReason, tools09, tools1x } from '../../helpers/oracle';
import { checkTrees } from './tree-check';

const FIXTURES = ['tmeta', 'tmeta_with_shared_internals_and_leaves', 'tmeta_with_shared_internal_root', 'tmeta_with_empty_roots', 'tmeta_with_metadata_snap'];

/** device -> "vblock data time" lines in order, from thin_dump XML (1.x <def>/<ref> expanded). */
function parseDump(xml: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  const defs = new Map<string, string[]>();
  let cur: string[] = [];
  for (const line of xml.split('\n')) {
    const def = /<def name="([^"]+)"/.exec(line);
    if (def) { cur = []; defs.set(def[1], cur); continue; }
    const dev = /<device dev_id="(\d+)"/.exec(line);
    if (dev) { cur = []; out.set(Number(dev[1]), cur); continue; }
    const ref = /<ref name="([^"]+)"/.exec(line);
    if (ref) { cur.push(...defs.get(ref[1])!); continue; }
    const single = /<single_mapping origin_block="(\d+)" data_block="(\d+)" time="(\d+)"/.exec(line);
    if (single) { cur.push(`${single[1]} ${single[2]} ${single[3]}`); continue; }
    const range = /<range_mapping origin_begin="(\d+)" data_begin="(\d+)" length="(\d+)" time="(\d+)"/.exec(line);
    if (range) for (let i = 0; i < Number(range[3]); i++) cur.push(`${Number(range[1]) + i} ${Number(range[2]) + i} ${range[4]}`);
  }
  return out;
}

for (const name of FIXTURES) {
  test(`kernel fixture ${name}: mapping tree reads as thin_dump prints it`, (t) => {
    const tools = tools1x() ?? tools09();
    if (!tools) return t.skip(`${skipReason.tools1x}; ${skipReason.tools09}`);
    const file = kernelFixture(name);
    if (!file) return t.skip(skipReason.fixture(name));
    const image = fs.readFileSync(file);
    const dev = MemoryDevice.from(new Uint8Array(image.buffer, image.byteOffset, image.length));
    dev.readOnly = true;
    const bm = new BlockManager(dev);
    const tm = new TransactionManager(bm, new MemoryAllocator(bm.nrBlocks));
    const sb = bm.readRaw(0);
    const mappingRoot = getU64(sb, 0x140, 'data_mapping_root');
    const detailsRoot = getU64(sb, 0x148, 'device_details_root');
    const ml = new MultiLevelBTree(tm, 2, u64Value);
    const got = new Map<number, string[]>();
    for (const [devId, sub] of ml.level(0).entries(mappingRoot)) {
      const lines: string[] = [];
      for (const [vb, v] of ml.leafTree.entries(sub)) lines.push(`${vb} ${Math.floor(v / 2 ** 24)} ${v % 2 ** 24}`);
      got.set(devId, lines);
      assert.equal(ml.lookup(mappingRoot, [devId, Number(lines[0]?.split(' ')[0] ?? 0)]) !== undefined, lines.length > 0);
    }
    const r = tools.dump(file);
    assert.equal(r.status, 0, r.stderr);
    const want = parseDump(r.stdout);
    assert.deepEqual([...got.keys()].sort((a, b) => a - b), [...want.keys()].sort((a, b) => a - b));
    let total = 0;
    for (const [d, lines] of want) {
      assert.deepEqual(got.get(d), lines, `device ${d}`);
      total += lines.length;
    }
    const res = checkTrees(tm, [
      { root: mappingRoot, kind: { valueSize: 8, lower: { valueSize: 8 } } },
      { root: detailsRoot, kind: { valueSize: 24 } },
    ]);
    t.diagnostic(`${name}: ${want.size} devices, ${total} mappings, ${res.nodes} distinct nodes, leaf fill ${(100 * res.leafEntries / res.leafCapacity).toFixed(1)} %`);
  });
}

for (const name of ['tmeta', 'tmeta_with_shared_internals_and_leaves', 'tmeta_with_shared_internal_root']) {
  test(`kernel fixture ${name}: writes to kernel-shaped shared trees keep contents and counts exact`, (t) => {
    const file = kernelFixture(name);
    if (!file) return t.skip(skipReason.fixture(name));
    const image = fs.readFileSync(file);
    const dev = MemoryDevice.from(new Uint8Array(image.buffer, image.byteOffset, image.length));
    let bm = new BlockManager(dev);
    const alloc = new MemoryAllocator(bm.nrBlocks);
    let tm = new TransactionManager(bm, alloc);
    const mappingRoot = getU64(bm.readRaw(0), 0x140, 'data_mapping_root');
    const kind = { root: mappingRoot, kind: { valueSize: 8, lower: { valueSize: 8 } } };
    // Seed the allocator with the counts the trees imply (what the kernel's space map holds for them).
    const seed = checkTrees(tm, [kind]);
    for (const [b, c] of seed.metaRefs) alloc.setCount(b, c);
    alloc.commitState();
    let ml = new MultiLevelBTree(tm, 2, u64Value);
    const model = new Map<number, Map<number, number>>();
    for (const [d, sub] of ml.level(0).entries(mappingRoot)) model.set(d, new Map(ml.leafTree.entries(sub)));
    const devs = [...model.keys()];
    let root = mappingRoot;
    let s = 17;
    const rnd = (n: number) => { s = (s * 1103515245 + 12345) % 2 ** 31; return s % n; };
    const verify = () => {
      const res = checkTrees(tm, [{ root, kind: kind.kind }]);
      for (let b = 1; b < alloc.nrBlocks; b++) {
        const want = res.metaRefs.get(b) ?? 0;
        if (alloc.count(b) !== want) assert.fail(`block ${b}: count ${alloc.count(b)}, references ${want}`);
      }
      for (const [d, m] of model) assert.deepEqual([...ml.leafTree.entries(ml.subtree(root, [d])!)], [...m.entries()].sort((a, b) => a[0] - b[0]), `device ${d}`);
    };
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1500; i++) {
        const d = devs[rnd(devs.length)];
        const m = model.get(d)!;
        const keys = [...m.keys()];
        const op = rnd(10);
        if (op < 5) {
          const k = keys.length && op < 3 ? keys[rnd(keys.length)] : rnd(200000);
          const v = (rnd(1000000) * 2 ** 24) + rnd(10);
          root = ml.insert(root, [d, k], v);
          m.set(k, v);
        } else if (op < 9) {
          const k = keys.length ? keys[rnd(keys.length)] : 0;
          const r = ml.remove(root, [d, k]);
          assert.equal(r.value, m.get(k));
          m.delete(k);
          root = r.root;
        } else {
          const from = rnd(200000);
          const to = from + rnd(3000);
          const r = ml.removeRange(root, [d], from, to);
          let n = 0;
          for (const k of keys) if (k >= from && k < to) { m.delete(k); n++; }
          assert.equal(r.removed, n);
          root = r.root;
        }
      }
      verify();
      tm.flushDirty();
      alloc.commitState();
      bm = new BlockManager(dev);
      tm = new TransactionManager(bm, alloc);
      ml = new MultiLevelBTree(tm, 2, u64Value);
      verify();
    }
  });
}
