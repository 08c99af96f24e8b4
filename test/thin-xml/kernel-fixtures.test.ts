/**
 * Kernel-written metadata (../shared/fixtures/kernel-metadata, unpacked by the 1.x tools):
 *  - our reader reads 1.x's <def>/<ref> dump exactly as the test's own parser does, every
 *    device holds as many mappings as its mapped_blocks says, and the device and mapping
 *    counts are the fixtures README's;
 *  - 0.9.0's flat dump and 1.x's <def>/<ref> dump read into the same model;
 *  - our writer re-emits 0.9.0's dump byte for byte (also for -m, the metadata snapshot);
 *  - thin_ls and thin_delta computed from the model equal the tools' output on pools whose
 *    snapshots share leaves and internal nodes (the exclusive/shared rule on real sharing).
 * Skips visibly (with the reason) without ../shared or the tools.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { kernelFixture, ok, skipReason, tools09, tools1x, type Tools } from '../helpers/oracle';
import { Rand } from '../../support/random';
import { parseModel, parseToolDump, type DumpDevice, type DumpModel } from '../helpers/thin-model';
import { XmlWriter } from '../../src/thin/xml/writer';
import { formatDelta } from '../../src/thin/report/delta-format';
import { formatLs, LS_FIELDS } from '../../src/thin/report/ls-format';
import { lsRows, render } from './oracle-common';

const CLEAN = [
  'tmeta',
  'tmeta_with_metadata_snap',
  'tmeta_with_shared_internals_and_leaves',
  'tmeta_with_shared_internal_root',
  'tmeta_with_empty_roots',
  'tmeta_with_deleted_snapshot',
  'tmeta_device_id_reuse',
];

/** Devices and mappings of each clean fixture's live dump, from the fixtures README (thin_ls and thin_dump). */
const README_COUNTS: Record<string, { devices: number; mappings: number }> = {
  tmeta: { devices: 11, mappings: 115822 },
  tmeta_with_metadata_snap: { devices: 11, mappings: 115822 },
  tmeta_with_shared_internals_and_leaves: { devices: 2, mappings: 131136 },
  tmeta_with_shared_internal_root: { devices: 2, mappings: 3200 },
  tmeta_with_empty_roots: { devices: 2, mappings: 128 },
  tmeta_with_deleted_snapshot: { devices: 1, mappings: 0 },
  tmeta_device_id_reuse: { devices: 1, mappings: 0 },
};

/** The superblock's held_root (metadata snapshot block), which dumps do not print. */
function heldRoot(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    fs.readSync(fd, b, 0, 8, 0x38);
    return Number(b.readBigUInt64LE(0));
  } finally {
    fs.closeSync(fd);
  }
}

function side(d: DumpDevice) {
  return { devId: d.info.devId, mappings: d.mappings.map((m) => ({ originBegin: m.origin, dataBegin: m.data, length: 1 })) };
}

function checkReports(tools: Tools, meta: string, model: DumpModel, snap: number, quick: boolean): void {
  const fields = [...LS_FIELDS];
  const ls = ok(tools.ls(meta, ['-o', fields.join(',')]), `${tools.flavour} thin_ls`).stdout;
  assert.equal(ls, formatLs(lsRows(model), { fields, dataBlockSize: model.sb.dataBlockSize, dialect: tools.flavour }), `${tools.flavour} thin_ls`);

  const devs = model.devices;
  if (devs.length === 0) return;
  const r = new Rand(devs.length);
  const pairs: [number, number][] = [[0, devs.length - 1]];
  for (let k = 0; k < (quick ? 2 : 6); k++) pairs.push([r.int(devs.length), r.int(devs.length)]);
  const sb = { ...model.sb, ...(snap ? { metadataSnap: snap } : {}) };
  for (const [a, b] of pairs) {
    for (const verbose of [false, true]) {
      const args = ['--snap1', String(devs[a].info.devId), '--snap2', String(devs[b].info.devId), ...(verbose ? ['--verbose'] : [])];
      const got = ok(tools.delta(meta, args), `${tools.flavour} thin_delta`).stdout;
      assert.equal(formatDelta(sb, side(devs[a]), side(devs[b]), { verbose, dialect: tools.flavour }), got, `${tools.flavour} thin_delta ${args.join(' ')}`);
    }
  }
}

for (const name of CLEAN) {
  test(`kernel fixture ${name}: dumps, ls and delta`, async (t) => {
    const meta = kernelFixture(name);
    if (!meta) return t.skip(skipReason.fixture(name));
    const t1 = tools1x();
    if (!t1) return t.skip(skipReason.tools1x); // a cached .bin may outlive the tools
    const t09 = tools09();
    const snap = heldRoot(meta);

    const dump1 = ok(t1.dump(meta), 'thin_dump 1.x').stdout;
    const model1 = parseModel(dump1);
    await t.test('1.x dump reads back (def/ref expanded) as the test parser reads it, with the README counts', () => {
      assert.equal(model1.devices.length, dump1.split('<device ').length - 1, '<device> elements in the 1.x dump');
      assert.deepStrictEqual(model1, parseToolDump(dump1), 'our reader and the test parser read the 1.x dump alike');
      for (const d of model1.devices) {
        assert.equal(d.mappings.length, d.info.mappedBlocks, `device ${d.info.devId}: mappings read vs its mapped_blocks`);
      }
      const want = README_COUNTS[name];
      assert.equal(model1.devices.length, want.devices, 'devices (fixtures README)');
      assert.equal(model1.devices.reduce((n, d) => n + d.mappings.length, 0), want.mappings, 'mappings (fixtures README)');
    });

    await t.test('0.9.0 dump: same model, and our writer reprints it exactly', (tt) => {
      if (!t09) return tt.skip(skipReason.tools09);
      const dump09 = ok(t09.dump(meta), 'thin_dump 0.9.0').stdout;
      const model09 = parseModel(dump09);
      // 1.x omits flags="0"; the reader defaults it to 0, so the models agree entirely.
      assert.deepStrictEqual(model1, model09);
      assert.equal(render((o) => new XmlWriter(o), model09, 1), dump09);
    });

    if (snap) {
      await t.test(`metadata snapshot at block ${snap}: -m dumps agree, nr_data_blocks="0", no metadata_snap attribute`, (tt) => {
        const m1 = parseModel(ok(t1.dump(meta, ['-m']), 'thin_dump -m 1.x').stdout, { checkDataBlocks: false });
        assert.equal(m1.sb.nrDataBlocks, 0);
        if (!t09) return tt.skip(skipReason.tools09);
        const d09 = ok(t09.dump(meta, ['-m']), 'thin_dump -m 0.9.0').stdout;
        assert.doesNotMatch(d09, /metadata_snap/);
        assert.equal(render((o) => new XmlWriter(o), m1, 1), d09);
      });
    }

    await t.test('thin_ls and thin_delta (0.9.0)', (tt) => {
      if (!t09) return tt.skip(skipReason.tools09);
      checkReports(t09, meta, model1, snap, false);
    });
    await t.test('thin_ls and thin_delta (1.x)', () => {
      checkReports(t1, meta, model1, snap, true);
    });
  });
}
