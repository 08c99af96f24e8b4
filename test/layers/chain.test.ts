/**
 * Long layer chains and the reports, checked against the real tools:
 *  - a chain of 128 committed layers (overlay2's lower-layer limit) built with synth; every
 *    link's diff agrees with what synth changed, and thin_delta 0.9.0 agrees with diff();
 *  - the same seed on a fresh pool gives an identical thin_dump (another seed does not);
 *  - usage() agrees with thin_ls 0.9.0's MAPPED/EXCLUSIVE/SHARED_BYTES for every layer;
 *  - min_free_space refuses a new snapshot with a clear error, as Docker's does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { LayerStore, synthesize, synthChunkWord, type SynthLayerReport, type SynthReport } from '../../src/layers';
import { Pool } from '../../src/pool/pool';
import { tools09, skipReason } from '../helpers/oracle';
import { metadataOracles, MiB, tempDir } from '../helpers/pool-model';
import { expectCode } from './helpers';

async function freshPool(dir: string, dataMiB = 512): Promise<void> {
  await Pool.create(dir, { dataSize: dataMiB * MiB, metadataSize: 32 * MiB }).close();
}

const synthStore = (dir: string) => LayerStore.open(dir, { baseSize: 32 * MiB, filesystem: 'none', commitInterval: 0 });

/** thin_delta 0.9.0's plain ranges (in chunks) between two devices, 'same' left out. */
function thinDelta(meta: string, a: number, b: number): Array<{ kind: string; begin: number; length: number }> {
  const r = tools09()!.delta(meta, ['--snap1', String(a), '--snap2', String(b)]);
  assert.equal(r.status, 0, r.stderr);
  const out = [];
  for (const m of r.stdout.matchAll(/<(left_only|right_only|different|same) begin="(\d+)" length="(\d+)"\/>/g)) {
    if (m[1] !== 'same') out.push({ kind: m[1], begin: Number(m[2]), length: Number(m[3]) });
  }
  return out;
}

test('a chain of 128 layers (overlay2\'s limit) from synth: links, diffs, thin_delta, checks', async (t) => {
  const dir = tempDir(t, 'thinsim-layers-chain-');
  await freshPool(dir);
  const seed = 128;
  let s = await synthStore(dir);
  let report: SynthReport;
  try {
    report = await synthesize(s, { layers: 128, newPercent: 2, modifyPercent: 5, deletePercent: 1, seed });
    const list = s.list();
    assert.equal(list.length, 128);
    list.forEach((l, i) => {
      assert.equal(l.name, `synth-${i + 1}`);
      assert.equal(l.kind, 'committed');
      assert.equal(l.parent, i === 0 ? undefined : `synth-${i}`);
    });
    // Each link's diff is what synth did: new chunks right_only, deleted left_only, modified different.
    const cb = s.pool.chunkBytes;
    for (let n = 2; n <= 128; n++) {
      const d = s.diff(`synth-${n - 1}`, `synth-${n}`);
      const sum = (k: string) => d.filter((r) => r.kind === k).reduce((a, r) => a + r.length / cb, 0);
      const r: SynthLayerReport = report.layers[n - 1];
      assert.deepEqual([sum('right_only'), sum('left_only'), sum('different')], [r.newChunks, r.deletedChunks, r.modifiedChunks], `diff synth-${n - 1} synth-${n}`);
    }
    // The top layer's bytes: a chunk written new in the last layer holds that layer's word.
    const top = report.layers[127];
    const fresh = s.diff('synth-127', 'synth-128').find((r) => r.kind === 'right_only')!;
    const buf = await s.read('synth-128', fresh.offset, cb);
    assert.equal(buf.readUInt32LE(0), synthChunkWord(seed, 128, fresh.offset / cb));
    assert.equal(buf.readUInt32LE(cb - 4), synthChunkWord(seed, 128, fresh.offset / cb));
    assert.ok(top.mappedChunks > 0);
  } finally {
    await s.close();
  }
  metadataOracles(t, path.join(dir, 'metadata'), '128-layer chain: ');
  if (!tools09()) return t.skip(`thin_delta comparison: ${skipReason.tools09}`);
  s = await LayerStore.openReadOnly(dir);
  try {
    const cb = s.pool.chunkBytes;
    for (const [a, b] of [['synth-1', 'synth-2'], ['synth-64', 'synth-65'], ['synth-1', 'synth-128'], ['synth-128', 'synth-3']]) {
      const ours = s.diff(a, b).map((r) => ({ kind: r.kind, begin: r.offset / cb, length: r.length / cb }));
      assert.deepEqual(ours, thinDelta(path.join(dir, 'metadata'), s.stat(a).deviceId, s.stat(b).deviceId), `diff ${a} ${b} vs thin_delta`);
    }
  } finally {
    await s.close();
  }
});

test('synth is deterministic: the same seed gives an identical thin_dump; another seed does not', async (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  const dumps: string[] = [];
  for (const seed of [7, 7, 8]) {
    const dir = tempDir(t, 'thinsim-layers-det-');
    await freshPool(dir, 256);
    const s = await synthStore(dir);
    try {
      await synthesize(s, { layers: 12, newPercent: 4, modifyPercent: 10, deletePercent: 3, seed });
    } finally {
      await s.close();
    }
    const r = t09.dump(path.join(dir, 'metadata'));
    assert.equal(r.status, 0, r.stderr);
    dumps.push(r.stdout);
  }
  assert.ok(dumps[0].includes('<device dev_id="13"'), 'thirteen devices: the base and twelve layers');
  assert.equal(dumps[0], dumps[1], 'same seed, same thin_dump');
  assert.notEqual(dumps[0], dumps[2], 'another seed, another thin_dump');
});

test('usage() agrees with thin_ls 0.9.0 (MAPPED_BYTES, EXCLUSIVE_BYTES, SHARED_BYTES)', async (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  const dir = tempDir(t, 'thinsim-layers-usage-');
  await freshPool(dir, 256);
  const s = await synthStore(dir);
  try {
    await synthesize(s, { layers: 6, newPercent: 6, modifyPercent: 20, deletePercent: 10, seed: 3 });
    // A branch: a sibling of synth-4 with changes of its own, and a view.
    await s.prepare('branch', 'synth-3');
    await s.write('branch', 0, Buffer.alloc(3 * 65536, 5));
    await s.view('peek', 'synth-5');
  } finally {
    await s.close();
  }
  const r = t09.ls(path.join(dir, 'metadata'), ['--no-headers', '-o', 'DEV,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES']);
  assert.equal(r.status, 0, r.stderr);
  const tool = new Map(r.stdout.trim().split('\n').map((l) => {
    const [dev, mapped, excl, shared] = l.trim().split(/\s+/).map(Number);
    return [dev, { mapped, excl, shared }];
  }));
  const ro = await LayerStore.openReadOnly(dir);
  try {
    const rows = ro.usage();
    assert.equal(rows.length, 8);
    for (const u of rows) {
      const want = tool.get(ro.stat(u.name).deviceId)!;
      assert.deepEqual([u.mappedBytes, u.exclusiveBytes, u.sharedBytes], [want.mapped, want.excl, want.shared], `usage of ${u.name} vs thin_ls`);
    }
    assert.deepEqual(ro.usage('branch').map((u) => u.name), ['branch']);
    assert.ok(ro.usage('branch')[0].exclusiveBytes >= 3 * 65536);
  } finally {
    await ro.close();
  }
});

test('min_free_space: a new snapshot is refused below the free-space floor, allowed with 0', async (t) => {
  const dir = tempDir(t, 'thinsim-layers-minfree-');
  await freshPool(dir, 32); // 512 chunks of 64 KiB
  let s = await LayerStore.open(dir, { baseSize: 32 * MiB, filesystem: 'none', commitInterval: 0, minFreeSpace: 0.5 });
  try {
    await s.prepare('a');
    await s.write('a', 0, Buffer.alloc(300 * 65536, 1));
    await expectCode(s.prepare('b'), 'ENOSPC', /free data blocks.*dm\.min_free_space/);
    await expectCode(s.view('v', 'a'), 'E_INVALID', /only committed layers/);
    assert.deepEqual(s.list().map((l) => l.name), ['a'], 'nothing was created');
  } finally {
    await s.close();
  }
  s = await LayerStore.open(dir, { filesystem: 'none', commitInterval: 0, minFreeSpace: 0 });
  try {
    assert.equal((await s.prepare('b')).size, 32 * MiB, 'the base\'s recorded size wins over the default');
  } finally {
    await s.close();
  }
  metadataOracles(t, path.join(dir, 'metadata'), 'min_free_space: ');
});
