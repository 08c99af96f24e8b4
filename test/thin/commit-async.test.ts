/**
 * ThinMetadata.commitAsync: the pool's commit must not stall the event loop, and must keep
 * the crash semantics of commit(). Checked against the workload model (test/helpers):
 * - the event loop turns while the commit is in flight, and lookups made then see the new
 *   state (with a cache too small to hold it, so the blocks in flight are read back);
 * - an image of what a power cut would leave, taken at every turn of the commit, opens as
 *   either the previous or the new transaction, exactly, and checks clean;
 * - a write that fails part way rejects, leaves the previous commit on disk, and a retry
 *   commits everything;
 * - on a FileDevice, thin_check (0.9.0 and 1.x) accepts the result.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError } from '../../src/errors';
import { FileDevice } from '../../src/io/file-device';
import { MemoryDevice } from '../../src/io/memory-device';
import { checkMetadata, type CheckReport } from '../../src/thin/check';
import { ThinMetadata } from '../../src/thin/metadata';
import { skipReason, tmpdir, tools09, tools1x } from '../helpers/oracle';
import { Rand } from '../../support/random';
import { cloneState, PoolModel, type PoolState } from '../helpers/metadata-model';
import { assertDataCounts, assertMetadataMatches } from '../helpers/metadata-checks';
import { Workload } from '../helpers/workload';
import type { BlockDevice } from '../../src/io/block-device';

const MiB = 1024 * 1024;

function errors(rep: CheckReport): string[] {
  return rep.findings.filter((f) => f.severity === 'error').map((f) => `${f.message} [${f.path ?? ''}]`);
}

/** A pool with history: devices, snapshots, many mappings, one commit behind it. */
function setUp(dev: BlockDevice, seed: number): Workload {
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 60_000, cacheBlocks: 16 });
  const model = new PoolModel(128, 60_000);
  const w = new Workload(md, model, new Rand(seed), () => ThinMetadata.open(dev, { cacheBlocks: 16 }));
  for (const id of [1, 2]) { md.createThin(id); model.createThin(id); }
  for (let v = 0; v < 3000; v++) w.write(1, v);
  md.createSnap(5, 1);
  model.createSnap(5, 1);
  w.commit();
  return w;
}

/** Changes for the commit under test: overwrites through a snapshot, new mappings, a transaction id. */
function change(w: Workload): void {
  for (let v = 0; v < 2000; v += 3) w.write(5, v);
  for (let v = 0; v < 4000; v++) w.write(2, 10_000 + v);
  w.md.setTransactionId(w.md.transactionId, w.md.transactionId + 1);
  w.model.setTransactionId(w.model.live.transactionId + 1);
}

/** The state `image` opens as: the old or the new transaction, exactly. */
function opensAs(image: Uint8Array, old: PoolState, next: PoolState, where: string): 'old' | 'new' {
  const dev = MemoryDevice.from(image);
  const md = ThinMetadata.open(dev);
  const which = md.transactionId === next.transactionId ? 'new' : 'old';
  assert.equal(md.transactionId, which === 'new' ? next.transactionId : old.transactionId, `${where}: transaction id`);
  assertMetadataMatches(md, which === 'new' ? next : old, `${where} (${which})`);
  assert.deepEqual(errors(checkMetadata(dev)), [], `${where} (${which}): check`);
  return which;
}

test('commitAsync: the event loop turns during the commit, and lookups then see the new state', async () => {
  const dev = new MemoryDevice(16 * MiB);
  const w = setUp(dev, 1);
  change(w);
  let turns = 0;
  let lookupsDuring = 0;
  let done = false;
  const model = w.model.live;
  const probe = (): void => {
    if (done) return;
    turns++;
    // A few lookups per turn, against the model of the state being committed.
    for (const [id, d] of model.devices) {
      for (const [v, m] of [...d.map].slice(turns * 7 % Math.max(1, d.map.size), turns * 7 % Math.max(1, d.map.size) + 5)) {
        assert.deepEqual(w.md.lookup(id, v), m, `lookup(${id}, ${v}) during the commit`);
        lookupsDuring++;
      }
    }
    setImmediate(probe);
  };
  const writesBefore = dev.writes;
  const p = w.md.commitAsync();
  assert.equal(dev.writes, writesBefore, 'nothing is written before commitAsync returns');
  setImmediate(probe);
  await p;
  done = true;
  w.model.commit();
  assert.ok(turns >= 2, `the event loop turned ${turns} times during the commit`);
  assert.ok(lookupsDuring > 0);
  assert.ok(dev.writes > writesBefore);
  assertMetadataMatches(w.md, w.model.live, 'after commitAsync');
  assertDataCounts(w.md, w.model, 'after commitAsync');
  assert.deepEqual(errors(checkMetadata(dev)), []);
  assert.equal(w.md.dirty, false);
  // The next transaction builds on it (freed blocks now allocatable) and commits again.
  change(w);
  await w.md.commitAsync();
  w.model.commit();
  assertMetadataMatches(ThinMetadata.open(MemoryDevice.from(dev.image())), w.model.live, 'reopened after two async commits');
});

test('commitAsync: a power cut at any turn of the commit leaves the old or the new transaction', async () => {
  for (const seed of [2, 3]) {
    const dev = new MemoryDevice(16 * MiB);
    const w = setUp(dev, seed);
    const old = cloneState(w.model.committed);
    change(w);
    const next = cloneState(w.model.live);
    const images: Uint8Array[] = [dev.crashImage(seed)];
    let done = false;
    const grab = (): void => {
      if (done) return;
      for (let k = 0; k < 3; k++) images.push(dev.crashImage(seed * 1000 + images.length));
      setImmediate(grab);
    };
    const p = w.md.commitAsync();
    setImmediate(grab);
    await p;
    done = true;
    images.push(dev.crashImage(seed * 7), dev.image());
    const seen = new Set(images.map((img, i) => opensAs(img, old, next, `seed ${seed}, crash image ${i} of ${images.length}`)));
    assert.ok(seen.has('new'), 'after the commit the new transaction is there');
    assert.ok(images.length > 6, `${images.length} images taken during the commit`);
  }
});

test('commitAsync: a failed write keeps the previous commit on disk; a retry commits everything', async () => {
  // How many writes the commit makes (the same workload, the same seed), so that the
  // first, a middle one and the last (the superblock) can fail.
  const dry = new MemoryDevice(16 * MiB);
  const dw = setUp(dry, 10);
  change(dw);
  const before = dry.writes;
  await dw.md.commitAsync();
  const n = dry.writes - before;
  assert.ok(n >= 3, `${n} writes`);
  for (const failAt of [1, Math.ceil(n / 2), n]) {
    const dev = new MemoryDevice(16 * MiB);
    const w = setUp(dev, 10);
    const old = cloneState(w.model.committed);
    change(w);
    const next = cloneState(w.model.live);
    dev.faults.failWriteAt = failAt;
    await assert.rejects(w.md.commitAsync(), (e: unknown) => isThinError(e, 'E_IO'), `write ${failAt} fails`);
    assert.equal(opensAs(dev.image(), old, next, `after write ${failAt} failed`), 'old');
    // Lookups still see the open transaction; it commits on a second try.
    assertMetadataMatches(w.md, next, `open transaction after write ${failAt} failed`);
    await w.md.commitAsync();
    w.model.commit();
    assert.equal(opensAs(dev.image(), old, next, `retry after write ${failAt} failed`), 'new');
    assertDataCounts(w.md, w.model, `retry after write ${failAt} failed`);
  }
});

test('commitAsync on a FileDevice: thin_check 0.9.0 and 1.x accept the result', async (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const file = dir.sparse('metadata', 16 * MiB);
  const dev = new FileDevice(file);
  const w = setUp(dev, 21);
  change(w);
  await w.md.commitAsync();
  w.model.commit();
  w.md.close();
  const re = ThinMetadata.open(new FileDevice(file, { readOnly: true }));
  assertMetadataMatches(re, w.model.live, 'reopened from the file');
  re.close();
  let checked = 0;
  for (const [tools, reason] of [[tools09(), skipReason.tools09], [tools1x(), skipReason.tools1x]] as const) {
    if (!tools) { t.diagnostic(`skipped: ${reason}`); continue; }
    const r = tools.check(file);
    assert.equal(r.status, 0, `thin_check ${tools.version}: ${r.stderr}${r.stdout}`);
    checked++;
  }
  if (checked === 0) t.skip('no thin_check available');
});
