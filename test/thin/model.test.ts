/**
 * Pool metadata against an in-memory model (test/helpers/metadata-model.ts): random workloads over
 * ThinMetadata (thins, snapshot chains, writes, overwrites, removals, deletes, transaction ids,
 * metadata snapshots, commits, aborts, reopens) on a MemoryDevice and on FileDevices. After
 * every commit: lookups, mappings and details equal the model, the held metadata snapshot
 * equals the state it copied, checkMetadata finds no error, and every data block has a
 * non-zero count exactly when something maps it (exact counts depend on kernel-style sharing,
 * spec §7.3; the checker verifies those against the trees).
 *
 * Replay a failure with THINSIM_SEED=<seed>; THINSIM_SEEDS=n runs n seeds.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { MemoryDevice } from '../../src/io/memory-device';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { checkMetadata, type CheckReport } from '../../src/thin/check';
import { isThinError } from '../../src/errors';
import { tmpdir } from '../helpers/oracle';
import { Rand } from '../../support/random';
import { forSeedsInTmpdir, suiteSeeds } from '../helpers/seeds';
import { PoolModel, type PoolState } from '../helpers/metadata-model';
import { assertDataCounts, assertMetadataMatches, expectThinError } from '../helpers/metadata-checks';
import { Workload } from '../helpers/workload';
import type { BlockDevice } from '../../src/io/block-device';

const MiB = 1024 * 1024;

function errors(rep: CheckReport): string[] {
  return rep.findings.filter((f) => f.severity === 'error').map((f) => `${f.message} [${f.path ?? ''}${f.block !== undefined ? ` block ${f.block}` : ''}]`);
}

/** Everything we require after a commit. */
function verify(w: Workload, dev: BlockDevice, where: string): void {
  const md = w.md;
  const ctx = `${where} (commit ${w.commits})\n${w.trace()}`;
  assertMetadataMatches(md, w.model.live, ctx, w.r);
  assertDataCounts(md, w.model, ctx);
  assert.equal(md.heldRoot !== 0, w.model.held !== undefined, `${ctx}: held_root set iff a metadata snapshot is held`);
  const rep = checkMetadata(dev);
  assert.deepEqual(errors(rep), [], `${ctx}: checkMetadata`);
  assert.equal(rep.ok, true);
  assert.equal(rep.devices, w.model.devices.size, `${ctx}: devices counted by the checker`);
  let mapped = 0;
  for (const d of w.model.devices.values()) mapped += d.map.size;
  assert.equal(rep.mappings, mapped, `${ctx}: mappings counted by the checker`);
  if (w.model.held) verifyHeld(dev, w.model.held, ctx);
}

/** The metadata snapshot view shows the state as of the reserve. */
function verifyHeld(dev: BlockDevice, held: PoolState, ctx: string): void {
  const snap = ThinMetadata.open(dev, { metadataSnap: true });
  assert.equal(snap.readOnly, true);
  assertMetadataMatches(snap, held, `${ctx}: metadata snapshot view`);
  expectThinError(() => snap.createThin(999), 'E_READ_ONLY', 'writing through a metadata snapshot view');
  const rep = checkMetadata(dev, { metadataSnap: true });
  assert.deepEqual(errors(rep), [], `${ctx}: checkMetadata -m`);
}

function memoryRun(seed: number, steps: number, sizeMiB: number, opts: ConstructorParameters<typeof Workload>[4] = {}): Workload {
  const r = new Rand(seed);
  let dev = new MemoryDevice(sizeMiB * MiB, `mem-${seed}`);
  const nrData = 20000 + r.int(30000);
  const bs = r.pick([128, 256, 1024]);
  const md = ThinMetadata.format(dev, { dataBlockSize: bs, nrDataBlocks: nrData });
  const model = new PoolModel(bs, nrData);
  const w = new Workload(md, model, r, () => {
    // Reopen from the device; now and then from a copy of its bytes (a new process reading the file).
    if (r.chance(0.5)) dev = MemoryDevice.from(dev.image(), `mem-${seed}-copy`);
    return ThinMetadata.open(dev);
  }, { ...opts, onCommit: (wl) => verify(wl, dev, `seed ${seed}`) });
  w.run(steps);
  // Final: commit, reopen from the bytes, everything still there.
  w.commit();
  dev = MemoryDevice.from(dev.image(), `mem-${seed}-final`);
  w.md = ThinMetadata.open(dev);
  verify(w, dev, `seed ${seed} after the final reopen`);
  return w;
}

const NO_META_SNAP = { metaSnap: 0 };

test('random workloads on a MemoryDevice match the model after every commit', async (t) => {
  for (const seed of suiteSeeds(10, 7100)) {
    await t.test(`seed ${seed}`, () => {
      const w = memoryRun(seed, 260, 8, { weights: NO_META_SNAP });
      assert.ok(w.commits >= 5, `seed ${seed}: the workload committed ${w.commits} times`);
    });
  }
});

test('random workloads that reserve and release metadata snapshots', async (t) => {
  for (const seed of suiteSeeds(8, 7200)) {
    await t.test(`seed ${seed}`, () => {
      memoryRun(seed, 200, 8, { weights: { metaSnap: 4 } });
    });
  }
});

test('writing to a device while a metadata snapshot is held keeps the snapshot intact', async (t) => {
  // The smallest case of the workload above: the held copy shares the top-level mapping root,
  // so changing a device must copy its subtree and take a reference on every data block of each
  // shadowed leaf (spec §7.1, §8.1), exactly as when a thin snapshot shares the subtree.
  const cases: [string, (md: ThinMetadata, m: PoolModel, w: Workload) => void][] = [
    ['overwrite', (_md, _m, w) => w.write(0, 0)],
    ['insert', (_md, _m, w) => w.write(0, 20)],
    ['remove', (md, m) => { md.removeMapping(0, 3); m.remove(0, 3); }],
    ['removeRange', (md, m) => { md.removeRange(0, 2, 8); m.removeRange(0, 2, 8); }],
    ['delete', (md, m) => { md.deleteDevice(0); m.deleteDevice(0); }],
    ['snapshot then write both', (md, m, w) => { md.createSnap(1, 0); m.createSnap(1, 0); w.write(1, 3); w.write(0, 4); }],
  ];
  for (const [name, change] of cases) {
    await t.test(name, () => {
      const dev = new MemoryDevice(4 * MiB);
      const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 1000 });
      const model = new PoolModel(128, 1000);
      const w = new Workload(md, model, new Rand(1), () => ThinMetadata.open(dev));
      md.createThin(0);
      model.createThin(0);
      for (let v = 0; v < 10; v++) w.write(0, v);
      md.reserveMetadataSnap();
      model.reserveMetadataSnap();
      change(md, model, w);
      w.commit();
      assertMetadataMatches(md, model.live, name);
      assertDataCounts(md, model, name);
      assert.deepEqual(errors(checkMetadata(dev)), [], `${name}: checkMetadata`);
      verifyHeld(dev, model.held!, name);
      // Releasing the snapshot drops exactly its references.
      md.releaseMetadataSnap();
      model.releaseMetadataSnap();
      w.commit();
      assertDataCounts(md, model, `${name}, released`);
      assert.deepEqual(errors(checkMetadata(dev)), [], `${name}, released: checkMetadata`);
    });
  }
});

test('checkMetadata -m on a held snapshot that shares trees with the live superblock', () => {
  // Right after reserve, the copy and the live superblock share both trees; after an
  // overwrite (mapped_blocks unchanged) they still share the details tree.
  const dev = new MemoryDevice(4 * MiB);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 1000 });
  for (const id of [1, 2, 3]) md.createThin(id);
  for (let v = 0; v < 5; v++) md.insertMapping(2, v, md.allocateDataBlock());
  md.reserveMetadataSnap();
  let rep = checkMetadata(dev, { metadataSnap: true });
  assert.deepEqual(errors(rep), [], 'nothing changed since the reserve');
  assert.equal(rep.devices, 3, 'check -m counts the snapshot\'s devices even when its trees are the live ones');
  md.insertMapping(2, 0, md.allocateDataBlock());
  md.commit();
  rep = checkMetadata(dev);
  assert.deepEqual(errors(rep), [], 'live check with a snapshot sharing the details tree');
  rep = checkMetadata(dev, { metadataSnap: true });
  assert.deepEqual(errors(rep), [], 'check -m with a snapshot sharing the details tree');
  assert.equal(rep.devices, 3);
});

test('write-heavy workloads build multi-level mapping trees and snapshot chains', async (t) => {
  for (const seed of suiteSeeds(3, 7300)) {
    await t.test(`seed ${seed}`, () => {
      const w = memoryRun(seed, 220, 16, {
        maxVBlock: 20000, maxRun: 160, maxDevices: 10,
        weights: { metaSnap: 0, write: 40, createSnap: 6, commit: 3, abort: 0.5, reopen: 0.5, deleteDevice: 0.5, removeRange: 1 },
      });
      // The workload is only interesting if some device needed internal nodes (> 252 mappings).
      const biggest = Math.max(0, ...[...w.model.devices.values()].map((d) => d.map.size));
      assert.ok(biggest > 252, `seed ${seed}: largest device has ${biggest} mappings`);
    });
  }
});

test('random workloads on a FileDevice, reopening the file', async (t) => {
  await forSeedsInTmpdir(t, 2, 7400, (seed, dir) => {
    const r = new Rand(seed);
    const file = dir.sparse('metadata', 8 * MiB);
    let dev = new FileDevice(file);
    const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 40000 });
    const w = new Workload(md, new PoolModel(128, 40000), r, (old) => {
      old.close();
      dev = new FileDevice(file);
      return ThinMetadata.open(dev);
    }, { weights: NO_META_SNAP, onCommit: (wl) => verify(wl, dev, `file seed ${seed}`) });
    w.run(200);
    w.commit();
    w.md.close();
    // A read-only open of the file sees the committed state.
    dev = new FileDevice(file, { readOnly: true });
    const ro = ThinMetadata.open(dev);
    assertMetadataMatches(ro, w.model.live, `file seed ${seed} read-only reopen`);
    expectThinError(() => ro.createThin(12345), 'E_READ_ONLY', 'read-only open refuses writes');
    ro.close();
  });
});

test('snapshots of snapshots: pool time, creation and snapshotted times follow the kernel', () => {
  const dev = new MemoryDevice(8 * MiB);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 10000 });
  const model = new PoolModel(128, 10000);
  const w = new Workload(md, model, new Rand(42), () => ThinMetadata.open(dev));
  md.createThin(0);
  model.createThin(0);
  for (let v = 0; v < 300; v++) w.write(0, v);
  // A chain 0 -> 1 -> 2 -> ... -> 12, each level overwriting a few blocks, and a second snapshot
  // of every third level.
  let parent = 0;
  for (let level = 1; level <= 12; level++) {
    md.createSnap(level, parent);
    model.createSnap(level, parent);
    assert.equal(md.time, level + Math.floor((level - 1) / 3), 'pool time increments once per snapshot');
    for (let v = level * 7; v < level * 7 + 5; v++) w.write(level, v);
    for (let v = level * 11; v < level * 11 + 3; v++) w.write(parent, v);
    if (level % 3 === 0) {
      md.createSnap(100 + level, level);
      model.createSnap(100 + level, level);
    }
    if (level % 4 === 0) w.commit();
    parent = level;
  }
  md.setTransactionId(0, 77);
  model.setTransactionId(77);
  md.createSnap(200, 5);
  model.createSnap(200, 5);
  w.commit();
  assertMetadataMatches(md, model.live, 'snapshot chain');
  const d5 = md.deviceDetails(5);
  const d200 = md.deviceDetails(200);
  assert.equal(d200.creationTime, md.time, "snapshot's creation_time is the new pool time");
  assert.equal(d200.snapshottedTime, md.time);
  assert.equal(d200.transactionId, 77, "snapshot's transaction id is the pool's at creation");
  assert.equal(d5.snapshottedTime, md.time, "origin's snapshotted_time is the new pool time");
  assert.equal(d200.mappedBlocks, d5.mappedBlocks, 'a snapshot starts with the origin mapped_blocks');
  assertDataCounts(md, model, 'snapshot chain');
  assert.deepEqual(errors(checkMetadata(dev)), []);
  // Deleting the middle of the chain leaves the others intact.
  for (const id of [6, 3, 0, 112]) {
    md.deleteDevice(id);
    model.deleteDevice(id);
  }
  w.commit();
  assertMetadataMatches(md, model.live, 'after deleting chain members');
  assertDataCounts(md, model, 'after deleting chain members');
  assert.deepEqual(errors(checkMetadata(dev)), []);
});

test('hundreds of devices: details and top-level trees with internal nodes', () => {
  const dev = new MemoryDevice(16 * MiB);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 50000 });
  const model = new PoolModel(128, 50000);
  const r = new Rand(9);
  const w = new Workload(md, model, r, () => ThinMetadata.open(dev));
  const ids: number[] = [];
  for (let i = 0; i < 400; i++) {
    const id = i * 37 + (i % 5);
    ids.push(id);
    if (i > 0 && i % 4 === 0) {
      const origin = ids[r.int(ids.length - 1)];
      md.createSnap(id, origin);
      model.createSnap(id, origin);
    } else {
      md.createThin(id);
      model.createThin(id);
    }
    for (let k = 0; k < 3; k++) w.write(id, r.int(1000));
  }
  w.commit();
  assertMetadataMatches(md, model.live, '400 devices');
  assert.deepEqual(errors(checkMetadata(dev)), []);
  for (const id of ids.filter((_, i) => i % 3 === 1)) {
    md.deleteDevice(id);
    model.deleteDevice(id);
  }
  w.commit();
  const again = ThinMetadata.open(MemoryDevice.from(dev.image()));
  assertMetadataMatches(again, model.live, '400 devices, a third deleted, reopened');
  assertDataCounts(again, model, 'after deletes');
  assert.deepEqual(errors(checkMetadata(dev)), []);
});

test('removals that empty or merge whole leaves keep the trees and counts exact', async (t) => {
  // Sequential writes fill leaves of 252 (keys 0..251, 252..503, ...). Each case removes a span
  // that empties a leaf or merges neighbours, from a committed tree (so every node is shadowed),
  // with and without a snapshot sharing the subtree.
  const cases: [string, number, number, 'range' | 'loop'][] = [
    ['exactly one leaf (1008..1259) by removeRange', 1008, 1260, 'range'],
    ['a leaf and parts of its neighbours by removeRange', 1000, 1400, 'range'],
    ['a leaf and parts of its neighbours one by one', 1000, 1400, 'loop'],
    ['most of the tree by removeRange', 100, 2900, 'range'],
    ['the first leaf one by one', 0, 252, 'loop'],
    ['a partial leaf (borrow) by removeRange', 1008, 1200, 'range'],
  ];
  for (const shared of [false, true]) {
    for (const [name, from, to, how] of cases) {
      await t.test(`${name}${shared ? ', subtree shared with a snapshot' : ''}`, () => {
        const dev = new MemoryDevice(8 * MiB);
        const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 10000 });
        const model = new PoolModel(128, 10000);
        const w = new Workload(md, model, new Rand(3), () => ThinMetadata.open(dev));
        md.createThin(0);
        model.createThin(0);
        for (let v = 0; v < 3000; v++) w.write(0, v);
        if (shared) {
          md.createSnap(1, 0);
          model.createSnap(1, 0);
        }
        w.commit();
        const target = shared ? 1 : 0;
        if (how === 'range') assert.equal(md.removeRange(target, from, to), model.removeRange(target, from, to));
        else for (let v = from; v < to; v++) assert.deepEqual(md.removeMapping(target, v), model.remove(target, v));
        w.commit();
        assertMetadataMatches(md, model.live, name);
        assertDataCounts(md, model, name);
        assert.deepEqual(errors(checkMetadata(dev)), [], `${name}: checkMetadata`);
      });
    }
  }
});

test('abort and reopen without commit roll back to the last commit', () => {
  const dev = new MemoryDevice(8 * MiB);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 5000 });
  const model = new PoolModel(128, 5000);
  const w = new Workload(md, model, new Rand(5), () => ThinMetadata.open(dev));
  md.createThin(1);
  model.createThin(1);
  for (let v = 0; v < 500; v++) w.write(1, v);
  w.commit();
  const before = dev.image();
  // Everything that can change, then abort.
  md.createSnap(2, 1);
  model.createSnap(2, 1);
  for (let v = 0; v < 50; v++) w.write(2, v);
  md.removeRange(1, 100, 300);
  model.removeRange(1, 100, 300);
  md.setTransactionId(0, 9);
  model.setTransactionId(9);
  md.deleteDevice(1);
  model.deleteDevice(1);
  md.growData(6000);
  model.resizeData(6000);
  assert.equal(md.dirty, true);
  w.abort();
  assert.equal(md.dirty, false, 'nothing pending after abort');
  assertMetadataMatches(md, model.live, 'after abort');
  assertDataCounts(md, model, 'after abort');
  assert.equal(md.nrDataBlocks, 5000, 'abort undoes a data resize');
  // The committed superblock is untouched on disk and the blocks it references are intact.
  assert.deepEqual(dev.image().subarray(0, 4096), before.subarray(0, 4096), 'superblock unchanged by an aborted transaction');
  // The pool keeps working after abort.
  for (let v = 1000; v < 1100; v++) w.write(1, v);
  w.commit();
  assertMetadataMatches(md, model.live, 'after abort + more writes');
  assert.deepEqual(errors(checkMetadata(dev)), []);
});

test('a power cut at any point leaves the last commit intact', async (t) => {
  for (const seed of suiteSeeds(4, 7500)) {
    await t.test(`seed ${seed}`, () => {
      const r = new Rand(seed);
      const dev = new MemoryDevice(8 * MiB);
      const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 30000 });
      const model = new PoolModel(128, 30000);
      const w = new Workload(md, model, r, () => ThinMetadata.open(dev), { weights: { abort: 0, reopen: 0, metaSnap: 0, commit: 0 } });
      for (let round = 0; round < 6; round++) {
        w.run(30);
        w.commit();
        const committed = model.committed;
        // Uncommitted work, then a crash: a random subset of the unsynced writes survives.
        w.run(25);
        for (let k = 0; k < 3; k++) {
          const img = dev.crashImage(seed * 100 + round * 10 + k);
          const crashed = MemoryDevice.from(img, 'crashed');
          const re = ThinMetadata.open(crashed);
          assertMetadataMatches(re, committed, `seed ${seed} round ${round}: after a crash\n${w.trace()}`);
          assert.deepEqual(errors(checkMetadata(crashed)), [], `seed ${seed} round ${round}: check after a crash`);
        }
        // Finish the transaction (the pending allocations are mapped by now).
        if (model.pending.size === 0) w.commit();
      }
    });
  }
});

test('a write error during commit leaves the previous commit on disk', () => {
  for (let failAt = 1; failAt < 40; failAt += 3) {
    const dev = new MemoryDevice(8 * MiB);
    const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 10000 });
    const model = new PoolModel(128, 10000);
    const w = new Workload(md, model, new Rand(failAt), () => ThinMetadata.open(dev));
    md.createThin(0);
    model.createThin(0);
    for (let v = 0; v < 700; v++) w.write(0, v * 2);
    w.commit();
    md.createSnap(1, 0);
    for (let v = 0; v < 300; v++) {
      const b = md.allocateDataBlock();
      md.insertMapping(1, v * 3, b);
    }
    dev.faults.failWriteAt = failAt;
    let threw = false;
    try {
      md.commit();
    } catch (e) {
      threw = true;
      assert.ok(isThinError(e, 'E_IO'), `commit failure is the injected E_IO: ${e}`);
    }
    dev.faults = {};
    for (const img of [dev.crashImage(failAt), dev.image()]) {
      const re = ThinMetadata.open(MemoryDevice.from(img));
      if (threw) assertMetadataMatches(re, model.committed, `write failure at write ${failAt}`);
      assert.deepEqual(errors(checkMetadata(MemoryDevice.from(img))), [], `check after a write failure at write ${failAt}`);
    }
  }
});

test('out of data space: allocateDataBlock returns -1 only when every block is in use', () => {
  const dev = new MemoryDevice(4 * MiB);
  const N = 700;
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: N });
  const model = new PoolModel(128, N);
  md.createThin(0);
  model.createThin(0);
  const seen = new Set<number>();
  for (let v = 0; v < N; v++) {
    const b = md.allocateDataBlock();
    assert.ok(b >= 0 && b < N && !seen.has(b), `allocation ${v} gave ${b}`);
    seen.add(b);
    md.insertMapping(0, v, b);
    model.insert(0, v, b);
  }
  assert.equal(md.allocateDataBlock(), -1, 'a full pool has no block to give');
  md.commit();
  model.commit();
  // Unmapping frees blocks, but not before the commit (the committed state still maps them).
  md.removeRange(0, 0, 100);
  model.removeRange(0, 0, 100);
  assert.equal(md.allocateDataBlock(), -1, 'blocks freed in this transaction are not reused before the commit');
  md.commit();
  model.commit();
  const again = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const b = md.allocateDataBlock();
    assert.ok(b >= 0 && !model.busy(b) && !again.has(b), `after commit, allocation ${i} gave ${b}`);
    again.add(b);
  }
  assert.equal(md.allocateDataBlock(), -1);
  for (const b of again) md.releaseDataBlock(b);
  md.commit();
  // Growing the data device gives space again.
  md.growData(N + 50);
  model.resizeData(N + 50);
  const b = md.allocateDataBlock();
  assert.ok(b >= 0, 'space after growing');
  md.insertMapping(0, 5000, b);
  model.insert(0, 5000, b);
  md.commit();
  model.commit();
  assertMetadataMatches(md, model.live, 'after ENOSPC and growth');
  assertDataCounts(md, model, 'after ENOSPC and growth');
  assert.deepEqual(errors(checkMetadata(dev)), []);
  expectThinError(() => md.growData(N), 'E_UNSUPPORTED', 'shrinking the data device');
});

test('growing the metadata and data devices across bitmap boundaries', (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const file = dir.sparse('metadata', 4 * MiB);
  let dev = new FileDevice(file);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 16000 });
  const model = new PoolModel(128, 16000);
  const w = new Workload(md, model, new Rand(77), () => ThinMetadata.open(dev));
  md.createThin(3);
  model.createThin(3);
  for (let v = 0; v < 1500; v++) w.write(3, v);
  w.commit();
  // Data: 16000 -> 40000 blocks (1 -> 3 bitmaps); metadata: 1024 -> 17000 blocks (1 -> 2 bitmaps).
  md.growData(40000);
  model.resizeData(40000);
  md.growMetadata(17000 * 4096);
  for (let v = 0; v < 2000; v++) w.write(3, 100000 + v);
  w.commit();
  assertMetadataMatches(md, model.live, 'after growth');
  assertDataCounts(md, model, 'after growth');
  const rep = checkMetadata(dev);
  assert.deepEqual(errors(rep), []);
  assert.equal(rep.metadataBlocks, 17000);
  md.close();
  dev = new FileDevice(file);
  const re = ThinMetadata.open(dev);
  assert.equal(re.nrDataBlocks, 40000);
  assert.equal(re.spaceUsage().metadataBlocks, 17000);
  assertMetadataMatches(re, model.live, 'reopened after growth');
  re.close();
  assert.equal(fs.statSync(file).size, 17000 * 4096);
});
