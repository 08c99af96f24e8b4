/**
 * Metadata written by a real kernel (../shared/fixtures/kernel-metadata, unpacked by
 * thin_metadata_unpack 1.x): clean fixtures check clean and dump exactly as thin_dump 0.9.0
 * prints them; thin_ls and thin_delta agree on tmeta; damaged fixtures are reported (exit 1),
 * never crash; dump -m of the held metadata snapshot equals thin_dump -m. Then the writer: open
 * a copy of tmeta read-write, write to an origin and a snapshot, create and delete snapshots,
 * commit; thin_check 1.x must pass and the dump must equal a model built from the original
 * dump plus the changes (the fixtures README's "What a writer must show").
 * Skips visibly when ../shared or the 1.x tools are missing.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { checkMetadata } from '../../src/thin/check';
import { kernelFixture, ok, skipPart, skipReason, tmpdir, tools09, tools1x, type Tools } from '../helpers/oracle';
import { Rand } from '../../support/random';
import { parseToolDump } from '../helpers/thin-model';
import { PoolModel } from '../helpers/metadata-model';
import { Workload } from '../helpers/workload';
import { thinsim, thinsimOk } from '../helpers/cli';

const CLEAN = [
  'tmeta', 'tmeta_with_metadata_snap', 'tmeta_with_shared_internals_and_leaves', 'tmeta_with_shared_internal_root',
  'tmeta_with_empty_roots', 'tmeta_with_deleted_snapshot', 'tmeta_device_id_reuse',
];
const DAMAGED = ['tmeta_device_id_reuse_with_corrupted_thins', 'tmeta_with_corrupted_metadata_snap', 'corrupted_tmeta_with_metadata_snap'];

function errors(file: string, metadataSnap = false): string[] {
  const dev = new FileDevice(file, { readOnly: true });
  try {
    return checkMetadata(dev, { metadataSnap }).findings.filter((f) => f.severity === 'error').map((f) => `${f.message} [${f.path ?? ''}]`);
  } finally {
    dev.close();
  }
}

/** The fixture's path, or a visible skip. */
function fixture(t: { skip(m: string): void }, name: string): string | undefined {
  const f = kernelFixture(name);
  if (!f) t.skip(skipReason.fixture(name));
  return f;
}

test('clean kernel fixtures: check is clean and our dump equals thin_dump 0.9.0', async (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  for (const name of CLEAN) {
    await t.test(name, (tt) => {
      const file = fixture(tt, name);
      if (!file) return;
      assert.deepEqual(errors(file), [], `${name}: checkMetadata`);
      const chk = thinsim(['check', file]);
      assert.equal(chk.status, 0, `${name}: thinsim check\n${chk.stderr}`);
      const ours = thinsimOk(['dump', file]);
      assert.equal(ours, ok(t09.dump(file), 'thin_dump 0.9.0').stdout, `${name}: thinsim dump equals thin_dump 0.9.0`);
    });
  }
});

test('tmeta: thin_ls and thin_delta agree', async (t) => {
  const t09 = tools09();
  const t1 = tools1x();
  if (!t09) return t.skip(skipReason.tools09);
  const file = fixture(t, 'tmeta');
  if (!file) return;
  for (const extra of [[], ['--no-headers']]) {
    const args = ['-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME', ...extra];
    const ours = thinsimOk(['ls', file, ...args]);
    assert.equal(ours, ok(t09.ls(file, args), 'thin_ls 0.9.0').stdout, `thin_ls ${args.join(' ')}`);
    if (t1 && extra.length) assert.equal(ours, ok(t1.ls(file, args), 'thin_ls 1.x').stdout, `thin_ls 1.x ${args.join(' ')}`);
    else if (extra.length) skipPart(t, 'thin_ls 1.x', skipReason.tools1x);
  }
  assert.equal(thinsimOk(['ls', file]), ok(t09.ls(file), 'thin_ls').stdout, 'thin_ls default columns');
  // Origin 1 against its first and last snapshots, two snapshots, and a device with itself.
  for (const [a, b] of [[1, 2], [1, 16], [2, 3], [12, 8], [4, 4]]) {
    for (const verbose of [false, true]) {
      const args = ['--snap1', String(a), '--snap2', String(b), ...(verbose ? ['--verbose'] : [])];
      assert.equal(thinsimOk(['delta', file, ...args]), ok(t09.delta(file, args), 'thin_delta').stdout, `thin_delta ${args.join(' ')}`);
    }
  }
});

test('tmeta_with_metadata_snap: dump -m, ls -m and check -m', (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  const file = fixture(t, 'tmeta_with_metadata_snap');
  if (!file) return;
  const ours = thinsimOk(['dump', '-m', file]);
  assert.equal(ours, ok(t09.dump(file, ['-m']), 'thin_dump -m').stdout, 'thinsim dump -m equals thin_dump -m');
  assert.match(ours.split('\n')[0], /nr_data_blocks="0"/);
  const args = ['-m', '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', '--no-headers'];
  assert.equal(thinsimOk(['ls', file, ...args]), ok(t09.ls(file, args), 'thin_ls -m').stdout, 'ls -m');
  assert.deepEqual(errors(file, true), [], 'checkMetadata -m');
  assert.equal(thinsim(['check', '-m', file]).status, 0);
});

test('damaged kernel fixtures are reported, never crash', async (t) => {
  for (const name of DAMAGED) {
    await t.test(name, (tt) => {
      const file = fixture(tt, name);
      if (!file) return;
      let errs: string[] = [];
      assert.doesNotThrow(() => { errs = errors(file); }, `${name}: checkMetadata must not throw`);
      assert.ok(errs.length > 0, `${name}: errors reported`);
      const chk = thinsim(['check', file], { timeoutMs: 60_000 });
      assert.equal(chk.status, 1, `${name}: thinsim check exits 1\n${chk.stderr}`);
      assert.doesNotMatch(chk.stderr, /internal error|\n\s+at /, `${name}: no stack trace`);
      for (const args of [['dump', file], ['dump', '-m', file], ['ls', file]]) {
        const r = thinsim(args, { timeoutMs: 60_000 });
        assert.ok(!r.timedOut, `${name}: ${args.join(' ')} hangs`);
        if (r.status !== 0) assert.match(r.stderr, /^thinsim: .+ \[E_[A-Z_]+\]\n$/, `${name}: ${args.join(' ')} fails with one ThinError line: ${r.stderr}`);
      }
      const t1 = tools1x();
      if (t1) tt.diagnostic(`thin_check 1.x exit ${t1.check(file).status}; thinsim: ${errs[0]}`);
      else skipPart(tt, 'thin_check 1.x verdict beside ours', skipReason.tools1x);
    });
  }
});

/** Open a copy of `name` read-write, apply the README's writer scenario, check with the tools. */
function writerScenario(t: { skip(m: string): void; diagnostic(m: string): void }, name: string, t1: Tools, t09: Tools, removals = false): void {
  const src = fixture(t, name);
  if (!src) return;
  const dir = tmpdir();
  try {
    const file = dir.file('tmeta.bin');
    fs.copyFileSync(src, file);
    const original = parseToolDump(ok(t09.dump(file), 'thin_dump').stdout);
    const model = PoolModel.fromDump(original);
    let dev = new FileDevice(file);
    const md = ThinMetadata.open(dev);
    const r = new Rand(2024);
    const w = new Workload(md, model, r, (old) => { old.close(); dev = new FileDevice(file); return ThinMetadata.open(dev); });
    const origin = 1;
    const snap = 16;
    const mapped = (d: number) => [...model.dev(d).map.keys()];
    // Overwrite blocks of the origin (the copy-on-write a pool does) and of a snapshot.
    for (const d of [origin, snap]) {
      const keys = mapped(d);
      for (let i = 0; i < 300; i++) w.write(d, r.pick(keys));
      for (let v = 0; v < 200; v++) w.write(d, 200000 + v); // new, unmapped before
    }
    if (removals) {
      // Discards: whole kernel-built leaves emptied, neighbours rebalanced, in shared subtrees.
      md.removeRange(snap, 1000, 1400);
      model.removeRange(snap, 1000, 1400);
      for (let v = 3000; v < 3300; v++) assert.deepEqual(md.removeMapping(origin, v), model.remove(origin, v));
    }
    w.commit();
    // Create snapshots (of the origin and of a snapshot), write to them, delete others.
    for (const [id, o] of [[100, origin], [101, snap], [102, 100]]) {
      md.createSnap(id, o);
      model.createSnap(id, o);
    }
    for (let i = 0; i < 100; i++) w.write(101, r.pick(mapped(101)));
    for (let i = 0; i < 50; i++) w.write(origin, r.pick(mapped(origin)));
    for (const id of [9, 102, 3]) {
      md.deleteDevice(id);
      model.deleteDevice(id);
    }
    md.setTransactionId(model.transactionId, model.transactionId + 1);
    model.setTransactionId(model.transactionId + 1);
    w.commit();
    md.close();

    for (const tool of [t1, t09]) {
      const c = tool.check(file);
      assert.equal(c.status, 0, `${name}: thin_check ${tool.version} after writing:\n${c.stderr}${c.stdout}`);
    }
    assert.deepEqual(errors(file), [], `${name}: checkMetadata after writing`);
    const want = PoolModel.expectedDump(model.live, { dataBlockSize: original.sb.dataBlockSize, flags: original.sb.flags, version: original.sb.version });
    const theirs = ok(t09.dump(file), 'thin_dump').stdout;
    assert.deepStrictEqual(parseToolDump(theirs), want, `${name}: thin_dump after writing equals the model`);
    assert.equal(thinsimOk(['dump', file]), theirs, `${name}: thinsim dump equals thin_dump after writing`);
  } finally {
    dir.cleanup();
  }
}

const WRITER_CASES = [
  ['writer on kernel metadata: tmeta', 'tmeta', false],
  ['writer on kernel metadata with a held metadata snapshot: tmeta_with_metadata_snap', 'tmeta_with_metadata_snap', false],
  ['writer on kernel metadata: discards (removeRange, removeMapping) in shared kernel trees', 'tmeta', true],
] as const;

for (const [title, name, removals] of WRITER_CASES) {
  test(title, (t) => {
    const t1 = tools1x();
    const t09 = tools09();
    if (!t1) return t.skip(skipReason.tools1x);
    if (!t09) return t.skip(skipReason.tools09);
    writerScenario(t, name, t1, t09, removals);
  });
}
