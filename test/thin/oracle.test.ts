/**
 * Randomized pool workloads checked by the real thin-provisioning-tools. A workload (thins,
 * snapshot chains, writes, overwrites, removals, deletes, commits, aborts, reopens) runs over
 * ThinMetadata on a metadata file; then:
 *  (a) thin_check 1.x and 0.9.0 accept the file;
 *  (b) `thinsim dump` equals thin_dump 0.9.0 byte for byte (we write version 2 and flags 0,
 *      which 0.9.0 prints as they are, so nothing needs normalising), and the mappings thin_dump
 *      printed are the model's;
 *  (c) thin_restore (0.9.0 and 1.x) of that XML into a fresh file dumps identically;
 *  (d) `thinsim ls -o ...` (with and without --no-headers) equals thin_ls 0.9.0 and 1.x;
 *  (e) `thinsim delta` (plain and --verbose) equals thin_delta 0.9.0 for random device pairs and
 *      an origin with its snapshot after writes to both; the plain form also equals 1.x's once
 *      its documented differences (no final newline, no metadata_snap) are undone;
 *  (f) with a held metadata snapshot: both thin_checks pass, `thinsim dump -m` equals
 *      thin_dump -m and the state at the reserve.
 * Replay one seed with THINSIM_SEED=<seed>.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { bothTools, ok, tmpdir, type TmpDir, type Tools } from '../helpers/oracle';
import { RecordingSink, type DumpModel } from '../helpers/thin-model';
import { parseXml } from '../../src/thin/xml/reader';
import { Rand } from '../../support/random';
import { forSeedsInTmpdir } from '../helpers/seeds';
import { PoolModel, type PoolState } from '../helpers/metadata-model';
import { Workload } from '../helpers/workload';
import { thinsim, thinsimOk } from '../helpers/cli';

const MiB = 1024 * 1024;
const LS_FIELDS = 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME';

function parseDump(xml: string): DumpModel {
  // A -m dump says nr_data_blocks="0" (the copy has no data space map); the reader refuses
  // mappings past nr_data_blocks, so read it with a large value and put the 0 back.
  const snapDump = /^<superblock [^>]*nr_data_blocks="0"/.test(xml);
  const rec = new RecordingSink();
  parseXml(snapDump ? xml.replace('nr_data_blocks="0"', `nr_data_blocks="${2 ** 40}"`) : xml, rec);
  const m = rec.model();
  if (snapDump) m.sb.nrDataBlocks = 0;
  return m;
}

interface Built {
  file: string;
  model: PoolModel;
  /** An origin and its snapshot, both written after the snapshot. */
  pair: [number, number];
  w: Workload;
}

/** Run a random workload on a metadata file in `dir`; returns with everything committed and closed. */
function build(dir: TmpDir, seed: number, steps: number, weights: Partial<Record<string, number>> = { metaSnap: 0 }): Built {
  const r = new Rand(seed);
  const file = dir.sparse('metadata', (4 + 4 * r.int(3)) * MiB);
  const nrData = 5000 + r.int(60000);
  const bs = r.pick([128, 128, 256, 2048]);
  let dev = new FileDevice(file);
  const md = ThinMetadata.format(dev, { dataBlockSize: bs, nrDataBlocks: nrData });
  const model = new PoolModel(bs, nrData);
  const w = new Workload(md, model, r, (old) => {
    old.close();
    dev = new FileDevice(file);
    return ThinMetadata.open(dev);
  }, { weights, maxVBlock: r.chance(0.5) ? 3000 : 30000, maxRun: 80 });
  w.run(steps);
  // An origin with many mappings, a snapshot of it, writes to both (sharing broken on some).
  let origin = [...model.devices.entries()].sort((a, b) => b[1].map.size - a[1].map.size)[0]?.[0];
  if (origin === undefined) {
    origin = w.newId();
    w.md.createThin(origin);
    model.createThin(origin);
    for (let v = 0; v < 300; v++) w.write(origin, v);
  }
  const snap = w.newId();
  w.md.createSnap(snap, origin);
  model.createSnap(snap, origin);
  const keys = [...model.dev(origin).map.keys()];
  for (let i = 0; i < 20 && keys.length; i++) w.write(snap, r.pick(keys));
  for (let i = 0; i < 20 && keys.length; i++) w.write(origin, r.pick(keys));
  for (let v = 0; v < 10; v++) w.write(snap, 50000 + v);
  w.commit();
  w.md.close();
  return { file, model, pair: [origin, snap], w };
}

function checkBoth(t1: Tools, t09: Tools, file: string, what: string, args: string[] = []): void {
  for (const t of [t1, t09]) {
    const r = t.check(file, args);
    assert.equal(r.status, 0, `${what}: thin_check ${t.version} ${args.join(' ')} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  }
}

/** (b)+(c): dump agreement and the round trip through both thin_restores. */
function checkDump(t1: Tools, t09: Tools, dir: TmpDir, file: string, state: PoolState, bs: number, what: string): string {
  const ours = thinsimOk(['dump', file]);
  const theirs = ok(t09.dump(file), `${what}: thin_dump 0.9.0`).stdout;
  assert.equal(ours, theirs, `${what}: thinsim dump equals thin_dump 0.9.0`);
  assert.deepStrictEqual(parseDump(theirs), PoolModel.expectedDump(state, { dataBlockSize: bs }), `${what}: thin_dump shows the model`);
  const xml = dir.file('ours.xml');
  fs.writeFileSync(xml, ours);
  for (const t of [t09, t1]) {
    const ref = dir.sparse(`ref-${t.flavour}.bin`, 16 * MiB);
    ok(t.restore(xml, ref), `${what}: thin_restore ${t.version}`);
    assert.equal(ok(t09.dump(ref), 'thin_dump of the restored file').stdout, ours, `${what}: thin_restore ${t.version} + thin_dump 0.9.0 gives our dump back`);
  }
  return ours;
}

/** (d) */
function checkLs(t1: Tools, t09: Tools, file: string, what: string, extra: string[] = []): void {
  for (const headers of [true, false]) {
    const args = ['-o', LS_FIELDS, ...(headers ? [] : ['--no-headers']), ...extra];
    const ours = thinsimOk(['ls', file, ...args]);
    assert.equal(ours, ok(t09.ls(file, args), 'thin_ls 0.9.0').stdout, `${what}: thinsim ls ${args.join(' ')} equals thin_ls 0.9.0`);
    // 1.x's thin_ls always spends 0.5 s in its progress thread: compare one form only.
    if (!headers) assert.equal(ours, ok(t1.ls(file, args), 'thin_ls 1.x').stdout, `${what}: thinsim ls ${args.join(' ')} equals thin_ls 1.x`);
  }
}

/** (e) */
function checkDelta(t1: Tools, t09: Tools, file: string, pairs: [number, number][], what: string, extra: string[] = []): void {
  for (const [a, b] of pairs) {
    for (const verbose of [false, true]) {
      const args = ['--snap1', String(a), '--snap2', String(b), ...(verbose ? ['--verbose'] : []), ...extra];
      const ours = thinsimOk(['delta', file, ...args]);
      assert.equal(ours, ok(t09.delta(file, args), 'thin_delta 0.9.0').stdout, `${what}: thinsim delta ${args.join(' ')} equals thin_delta 0.9.0`);
      if (!verbose) {
        const one = ok(t1.delta(file, args), 'thin_delta 1.x').stdout;
        const norm = ours.replace(/ metadata_snap="\d+"/, '').replace(/\n$/, '');
        assert.equal(norm, one.replace(/\n$/, ''), `${what}: thinsim delta ${args.join(' ')} equals thin_delta 1.x (1.x omits metadata_snap and the final newline)`);
      }
    }
  }
}

function randomPairs(r: Rand, ids: number[], n: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < n && ids.length; i++) out.push([r.pick(ids), r.pick(ids)]);
  return out;
}


test('random workloads: thin_check, thin_dump, thin_restore, thin_ls and thin_delta agree', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  await forSeedsInTmpdir(t, 5, 8100, (seed, dir) => {
    const { file, model, pair, w } = build(dir, seed, seed % 2 ? 200 : 120);
    const what = `seed ${seed} (THINSIM_SEED=${seed})`;
    const bs = model.dataBlockSize;
    const before = fs.readFileSync(file);
    checkBoth(t1, t09, file, what);
    checkDump(t1, t09, dir, file, model.live, bs, what);
    checkLs(t1, t09, file, what);
    const ids = model.deviceIds();
    checkDelta(t1, t09, file, [pair, [pair[1], pair[0]], ...randomPairs(w.r, ids, 3)], what);
    assert.ok(before.equals(fs.readFileSync(file)), `${what}: read-only commands leave the file untouched`);
  });
});

test('a held metadata snapshot taken after the workload: thin_check -m, dump -m, ls -m, delta -m', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  await forSeedsInTmpdir(t, 2, 8200, (seed, dir) => {
    const { file, model, pair } = build(dir, seed, 120);
    const what = `seed ${seed} (THINSIM_SEED=${seed})`;
    const md = ThinMetadata.open(new FileDevice(file));
    const at = md.reserveMetadataSnap();
    model.reserveMetadataSnap();
    md.close();
    checkBoth(t1, t09, file, `${what}, snapshot held`);
    checkBoth(t1, t09, file, `${what}, snapshot held`, ['-m']);
    const ours = thinsimOk(['dump', '-m', file]);
    assert.equal(ours, ok(t09.dump(file, ['-m']), 'thin_dump -m').stdout, `${what}: thinsim dump -m equals thin_dump -m`);
    assert.deepStrictEqual(parseDump(ours), PoolModel.expectedDump(model.held!, { dataBlockSize: model.dataBlockSize, nrDataBlocks: 0 }), `${what}: dump -m shows the state at the reserve`);
    assert.equal(ok(t09.dump(file, [`--metadata-snap=${at}`]), 'thin_dump --metadata-snap=N').stdout, ours);
    checkDump(t1, t09, dir, file, model.live, model.dataBlockSize, `${what}, live dump with a snapshot held`);
    checkLs(t1, t09, file, `${what}, ls -m`, ['-m']);
    checkDelta(t1, t09, file, [pair], `${what}, delta with a snapshot held`);
    checkDelta(t1, t09, file, [pair], `${what}, delta -m`, ['-m']);
  });
});

test('writes, snapshots and deletes while a metadata snapshot is held', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  await forSeedsInTmpdir(t, 3, 8300, (seed, dir) => {
    // Reserve part way, keep working, and end with the snapshot still held.
    const { file, model, w } = build(dir, seed, 60);
    let md = ThinMetadata.open(new FileDevice(file));
    w.md = md;
    md.reserveMetadataSnap();
    model.reserveMetadataSnap();
    w.run(60);
    w.commit();
    md = w.md;
    const held = model.held !== undefined;
    md.close();
    const what = `seed ${seed} (THINSIM_SEED=${seed}), metadata snapshot ${held ? 'held' : 'released'}`;
    checkBoth(t1, t09, file, what);
    checkDump(t1, t09, dir, file, model.live, model.dataBlockSize, what);
    if (held) {
      const ours = thinsimOk(['dump', '-m', file]);
      assert.equal(ours, ok(t09.dump(file, ['-m']), 'thin_dump -m').stdout, `${what}: dump -m`);
      assert.deepStrictEqual(parseDump(ours), PoolModel.expectedDump(model.held!, { dataBlockSize: model.dataBlockSize, nrDataBlocks: 0 }), `${what}: dump -m shows the state at the reserve`);
    }
    // Release and commit: all of the snapshot's references go.
    if (held) {
      md = ThinMetadata.open(new FileDevice(file));
      md.releaseMetadataSnap();
      md.commit();
      md.close();
      checkBoth(t1, t09, file, `${what}, then released`);
    }
  });
});

test('thinsim check agrees with thin_check 1.x on the metadata free block count', (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1] = tt;
  const dir = tmpdir();
  try {
    const { file } = build(dir, 8400, 80);
    const one = ok(t1.check(file), 'thin_check 1.x').stdout;
    const ours = thinsim(['check', file]);
    assert.equal(ours.status, 0, ours.stderr);
    const field = (s: string, k: string) => s.match(new RegExp(`^${k}=(\\d+)$`, 'm'))?.[1];
    assert.equal(field(ours.stdout, 'TRANSACTION_ID'), field(one, 'TRANSACTION_ID'), 'TRANSACTION_ID');
    assert.equal(field(ours.stdout, 'METADATA_FREE_BLOCKS'), field(one, 'METADATA_FREE_BLOCKS'), 'METADATA_FREE_BLOCKS (1.x prints nr_blocks - nr_allocated of the metadata space map)');
  } finally {
    dir.cleanup();
  }
});
