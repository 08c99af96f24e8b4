/**
 * Restore in rounds (bounded memory) and the offline readers that stream:
 *  - a restore that writes its metadata in many small rounds gives metadata both
 *    thin_checks accept, whose thin_dump 0.9.0 output is the input XML byte for byte;
 *  - a restore that fails after many rounds were written leaves an existing pool's file
 *    exactly as it was (the undo log), and the pool still checks clean;
 *  - OfflineMetadata (dump, ls, delta's reader) gives what ThinMetadata gives on the
 *    same pools: superblock, devices, details and every leaf's bytes, live and -m;
 *  - a damaged node is an E_CHECKSUM naming the block and the path of blocks to it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { isThinError } from '../../src/errors';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { OfflineMetadata } from '../../src/thin/offline';
import { restoreFile } from '../../src/thin/restore';
import { dumpMetadata } from '../../src/thin/dump';
import { XmlWriter } from '../../src/thin/xml/writer';
import { Rand } from '../../support/random';
import { bothTools, ok, tmpdir } from '../helpers/oracle';

const MiB = 1024 * 1024;

/** thin_dump 0.9.0's XML of a pool of `devices` devices sharing data blocks, in any time order. */
function genXml(rng: Rand, devices: number, perDevice: number): string {
  const nrData = perDevice * 2;
  const lines = [`<superblock uuid="" time="4" transaction="9" flags="0" version="2" data_block_size="128" nr_data_blocks="${nrData}">`];
  for (let dev = 0; dev < devices; dev++) {
    const maps: string[] = [];
    let count = 0;
    for (let o = 0; o < perDevice * 2 && count < perDevice;) {
      o += rng.int(3);
      const len = rng.chance(0.6) ? 1 : 2 + rng.int(6);
      const d = rng.int(nrData - len);
      const t = rng.int(4);
      // Runs split where thin_dump would merge them would not round-trip byte for byte.
      maps.push(len === 1
        ? `    <single_mapping origin_block="${o}" data_block="${d}" time="${t}"/>`
        : `    <range_mapping origin_begin="${o}" data_begin="${d}" length="${len}" time="${t}"/>`);
      count += len;
      o += len + 1; // a gap after each run keeps neighbours from merging
    }
    lines.push(`  <device dev_id="${dev * 3}" mapped_blocks="${count}" transaction="${dev}" creation_time="${dev}" snap_time="${dev + 1}">`, ...maps, '  </device>');
  }
  lines.push('</superblock>');
  return lines.join('\n') + '\n';
}

function dumpText(md: ThinMetadata | OfflineMetadata): string {
  const parts: string[] = [];
  dumpMetadata(md, new XmlWriter((c) => parts.push(c)));
  return parts.join('');
}

test('a restore in many rounds round-trips through thin_dump, and both thin_checks accept it', async (t) => {
  const tools = bothTools(t);
  if (!tools) return;
  const [t1, t09] = tools;
  const dir = tmpdir('thinsim-rounds-');
  t.after(() => dir.cleanup());
  const xml = genXml(new Rand(7), 4, 30_000);
  const xmlFile = dir.file('in.xml');
  fs.writeFileSync(xmlFile, xml);
  const meta = dir.sparse('meta', 64 * MiB);
  const r = await restoreFile(meta, xmlFile, { metadataSize: 64 * MiB, roundBlocks: 16 });
  assert.ok(r.metadataUsed > 200, `a restore this size (${r.metadataUsed} blocks) spans many 16-block rounds`);
  ok(t1.check(meta), 'thin_check 1.x');
  ok(t09.check(meta), 'thin_check 0.9.0');
  assert.equal(ok(t09.dump(meta), 'thin_dump 0.9.0').stdout, xml);
});

test('a restore that fails after many rounds leaves the existing pool byte for byte', async (t) => {
  const dir = tmpdir('thinsim-rounds-');
  t.after(() => dir.cleanup());
  const meta = dir.sparse('meta', 64 * MiB);
  const first = dir.file('first.xml');
  fs.writeFileSync(first, genXml(new Rand(1), 2, 20_000));
  await restoreFile(meta, first, { metadataSize: 64 * MiB });
  const before = fs.readFileSync(meta);
  // A larger pool whose last mapping is bad: every round before it was written.
  const lines = genXml(new Rand(2), 3, 30_000).split('\n');
  const at = lines.length - 4; // the last mapping of the last device
  assert.match(lines[at], /mapping/);
  lines[at] = lines[at].replace(/time="\d+"/, 'time="x"');
  const bad = dir.file('bad.xml');
  fs.writeFileSync(bad, lines.join('\n'));
  await assert.rejects(restoreFile(meta, bad, { metadataSize: 64 * MiB, roundBlocks: 16 }), (e: unknown) => isThinError(e, 'E_PARSE'));
  assert.ok(before.equals(fs.readFileSync(meta)), 'the existing metadata file is unchanged');
  const md = OfflineMetadata.open(new FileDevice(meta, { readOnly: true }));
  assert.deepEqual(md.devices(), [0, 3]);
  md.close();
});

test('OfflineMetadata reads what ThinMetadata reads (live and metadata snapshot), leaf by leaf', () => {
  const dir = tmpdir('thinsim-offline-');
  try {
    const file = dir.sparse('meta', 32 * MiB);
    const rng = new Rand(11);
    const md = ThinMetadata.format(new FileDevice(file), { dataBlockSize: 128, nrDataBlocks: 200_000 });
    md.createThin(1);
    for (let i = 0; i < 40_000; i++) md.insertMapping(1, rng.int(100_000), md.allocateDataBlock());
    md.createSnap(2, 1);
    for (let i = 0; i < 5_000; i++) md.insertMapping(2, rng.int(100_000), md.allocateDataBlock());
    md.commit();
    md.reserveMetadataSnap();
    md.createThin(5);
    for (let i = 0; i < 3_000; i++) md.insertMapping(5, i * 7, md.allocateDataBlock());
    md.deleteDevice(1);
    md.commit();
    md.close();
    for (const metadataSnap of [false, true]) {
      const a = ThinMetadata.open(new FileDevice(file, { readOnly: true }), { metadataSnap });
      const b = OfflineMetadata.open(new FileDevice(file, { readOnly: true }), { metadataSnap });
      assert.deepEqual(b.superblock(), a.superblock());
      assert.deepEqual(b.devices(), a.devices());
      assert.equal(b.nrDataBlocks, a.nrDataBlocks);
      for (const id of a.devices()) {
        assert.deepEqual(b.deviceDetails(id), a.deviceDetails(id));
        let la = 0;
        for (const _ of a.mappingLeaves(id)) la++;
        const bytesA: Buffer[] = [];
        for (const leaf of a.mappingLeaves(id)) bytesA.push(Buffer.from(leaf.bytes));
        const bytesB: Buffer[] = [];
        for (const leaf of b.mappingLeaves(id)) bytesB.push(Buffer.from(leaf.bytes));
        assert.equal(bytesB.length, la, `device ${id}: leaves`);
        assert.ok(bytesA.every((x, i) => x.equals(bytesB[i])), `device ${id}: leaf bytes`);
      }
      assert.equal(dumpText(b), dumpText(a), `dump${metadataSnap ? ' -m' : ''}`);
      // Interleaved walks (delta walks two devices side by side) do not disturb each other.
      const ids = b.devices();
      const it1 = b.mappingLeaves(ids[0])[Symbol.iterator]();
      const it2 = b.mappingLeaves(ids[ids.length - 1])[Symbol.iterator]();
      const k1: number[] = [];
      const k2: number[] = [];
      for (;;) {
        const x = it1.next();
        const y = it2.next();
        if (!x.done) k1.push(x.value.key(0), x.value.count);
        if (!y.done) k2.push(y.value.key(0), y.value.count);
        if (x.done && y.done) break;
      }
      const want = (id: number): number[] => {
        const out: number[] = [];
        for (const l of a.mappingLeaves(id)) out.push(l.key(0), l.count);
        return out;
      };
      assert.deepEqual(k1, want(ids[0]));
      assert.deepEqual(k2, want(ids[ids.length - 1]));
      a.close();
      b.close();
    }
  } finally {
    dir.cleanup();
  }
});

test('a damaged leaf: E_CHECKSUM naming the block and the blocks leading to it', () => {
  const dir = tmpdir('thinsim-offline-');
  try {
    const file = dir.sparse('meta', 16 * MiB);
    const md = ThinMetadata.format(new FileDevice(file), { dataBlockSize: 128, nrDataBlocks: 100_000 });
    md.createThin(4);
    for (let i = 0; i < 20_000; i++) md.insertMapping(4, i, md.allocateDataBlock());
    md.commit();
    md.close();
    const ro = ThinMetadata.open(new FileDevice(file, { readOnly: true }));
    let leaves = 0;
    for (const _ of ro.mappingLeaves(4)) leaves++;
    assert.ok(leaves > 10);
    // The block of the 6th leaf, found through the trusted reader.
    let n = 0;
    let victim = -1;
    for (const leaf of ro.mappingLeaves(4)) if (n++ === 5) victim = Number(Buffer.from(leaf.bytes).readBigUInt64LE(8));
    ro.close();
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xff]), 0, 1, victim * 4096 + 100);
    fs.closeSync(fd);
    const b = OfflineMetadata.open(new FileDevice(file, { readOnly: true }));
    assert.throws(() => { for (const _ of b.mappingLeaves(4)) { /* walk */ } }, (e: unknown) => {
      assert.ok(isThinError(e, 'E_CHECKSUM'), String(e));
      assert.equal(e.details.block, victim);
      const path = e.details.pathBlocks as number[];
      assert.equal(path[path.length - 1], victim);
      assert.ok(path.length >= 2, `the path starts at the device's root: ${path}`);
      return true;
    });
    b.close();
  } finally {
    dir.cleanup();
  }
});
