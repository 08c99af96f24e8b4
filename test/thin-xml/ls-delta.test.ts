/**
 * Hand-built pools that pin down thin_ls's exclusive/shared rule and unit formatting and
 * thin_delta's grouping rules, checked against 0.9.0 and 1.x (files restored by 0.9.0, whose
 * restore handles every case; 1.x reads them).
 */

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ok, skipPart, skipReason, tmpdir, tools09, tools1x, type Tools } from '../helpers/oracle';
import type { DumpDevice, DumpModel, Mapping } from '../helpers/thin-model';
import { exclusiveCounts } from '../helpers/thin-model';
import { formatDelta } from '../../src/thin/report/delta-format';
import { DEFAULT_LS_FIELDS, formatDiskUnit, formatLs, LS_FIELDS, needsSharing, SharingCounter } from '../../src/thin/report/ls-format';
import { isThinError } from '../../src/errors';
import { XmlWriter } from '../../src/thin/xml/writer';
import { lsRows, render, restore } from './oracle-common';

/** Device from [origin, data, length, time?] runs. */
function dev(devId: number, runs: [number, number, number, number?][]): DumpDevice {
  const mappings: Mapping[] = [];
  for (const [o, d, len, t = 0] of runs) for (let i = 0; i < len; i++) mappings.push({ origin: o + i, data: d + i, time: t });
  mappings.sort((a, b) => a.origin - b.origin);
  return { info: { devId, mappedBlocks: mappings.length, transaction: devId, creationTime: 0, snapTime: 0 }, mappings };
}

function pool(devices: DumpDevice[], dataBlockSize = 128, nrDataBlocks = 100000): DumpModel {
  return { sb: { uuid: '', time: 3, transaction: 7, flags: 0, version: 2, dataBlockSize, nrDataBlocks }, devices };
}

/** Restore with 0.9.0 (handles every case), then run `check` with each available tool. */
function withPool(t: TestContext, model: DumpModel, check: (tools: Tools, meta: string) => void): void {
  const t09 = tools09();
  if (!t09) {
    t.skip(skipReason.tools09);
    return;
  }
  const dir = tmpdir();
  try {
    const meta = restore(t09, dir, render((out) => new XmlWriter(out), model, 1), 'pool');
    check(t09, meta);
    const t1 = tools1x();
    if (t1) check(t1, meta);
    else skipPart(t, 'the same checks against thin-provisioning-tools 1.x', skipReason.tools1x);
  } finally {
    dir.cleanup();
  }
}

test('thin_ls: a mapping is exclusive only when no other mapping in the pool uses its data block', (t) => {
  const model = pool([
    dev(0, [[0, 0, 10], [20, 5, 1]]), // data 5 twice inside device 0, data 0..1 shared with device 1
    dev(1, [[0, 0, 2], [50, 100, 3]]),
    dev(2, [[7, 100, 1], [8, 200, 4]]), // data 100 shared by devices 1 and 2
    dev(3, []),
  ]);
  const excl = exclusiveCounts(model);
  // Device 0: 11 mappings; data 0,1 shared with dev 1, data 5 used twice -> 4 shared.
  assert.deepEqual([...excl.values()], [7, 2, 4, 0]);

  const counter = new SharingCounter(model.sb.nrDataBlocks);
  for (const d of model.devices) for (const m of d.mappings) counter.inc(m.data);
  const viaCounter = model.devices.map((d) => d.mappings.reduce((n, m) => n + counter.exclusiveIn(m.data), 0));
  assert.deepEqual(viaCounter, [7, 2, 4, 0]);

  withPool(t, model, (tools, meta) => {
    const got = ok(tools.ls(meta, ['-o', LS_FIELDS.join(',')]), 'thin_ls').stdout;
    assert.equal(got, formatLs(lsRows(model), { fields: [...LS_FIELDS], dataBlockSize: 128, dialect: tools.flavour }), tools.flavour);
  });
});

test('thin_ls: MAPPED/EXCLUSIVE/SHARED unit formatting across the rounding thresholds', (t) => {
  const counts = [0, 1, 2, 3, 15, 16, 17, 18, 19, 33, 1023, 1024, 1025, 2047, 2048, 2049, 2050, 2051, 4097, 16383, 16384, 16385, 16400];
  for (const [bs, nr] of [[1, 200000], [128, 200000], [2097152, 200000]] as const) {
    let next = 0;
    const devices = counts.map((n, i) => {
      const d = dev(i, n ? [[0, next, n]] : []);
      next += n;
      return d;
    });
    if (bs === 2097152) devices.push(dev(99, [[0, next, 20000]]));
    const model = pool(devices, bs, nr);
    withPool(t, model, (tools, meta) => {
      const got = ok(tools.ls(meta, ['-o', 'DEV,MAPPED,EXCLUSIVE,SHARED,MAPPED_BYTES']), 'thin_ls').stdout;
      const want = formatLs(lsRows(model), { fields: ['DEV', 'MAPPED', 'EXCLUSIVE', 'SHARED', 'MAPPED_BYTES'], dataBlockSize: bs, dialect: tools.flavour });
      assert.equal(got, want, `bs ${bs} (${tools.flavour})`);
    });
  }
});

test('formatDiskUnit: thresholds', () => {
  assert.equal(formatDiskUnit(0), '0');
  assert.equal(formatDiskUnit(0, '1.x'), '0b');
  assert.equal(formatDiskUnit(8192), '8192');
  assert.equal(formatDiskUnit(8193), '8KiB');
  assert.equal(formatDiskUnit(8704), '9KiB'); // 8.5 rounds away from zero
  assert.equal(formatDiskUnit(1024 * 1024), '1024KiB');
  assert.equal(formatDiskUnit(1024 * 1024 + 1), '1024KiB');
  assert.equal(formatDiskUnit(1536 * 1024), '1536KiB');
  assert.equal(formatDiskUnit(128 * 1024 * 1024 - 64 * 1024), '128MiB');
  assert.equal(formatDiskUnit(2n ** 60n), '1024PiB');
  assert.equal(formatDiskUnit(2n ** 44n), '16TiB');
  assert.equal(formatDiskUnit(2n ** 44n, '1.x'), '16Tib');
});

test('thin_delta: grouping rules on hand-built devices', (t) => {
  const model = pool([
    // Left: one long run, a run with changing times, a gap, a tail the right lacks.
    dev(0, [[0, 0, 10, 0], [10, 10, 5, 2], [20, 300, 5], [30, 40, 3], [40, 500, 2], [60, 700, 4]]),
    // Right: same start, then the data breaks off (different), touching same runs with a data
    // jump (same across a run boundary), right-only stretches, and an extra run at the end.
    dev(1, [[0, 0, 5], [5, 900, 3], [8, 8, 2], [10, 10, 5, 1], [20, 300, 2], [22, 302, 3], [25, 800, 2], [30, 40, 1], [31, 950, 1], [32, 42, 1], [41, 501, 1], [70, 710, 3]]),
    dev(2, []),
    dev(3, [[0, 0, 15]]),
  ]);
  const pairs: [number, number][] = [[0, 1], [1, 0], [0, 0], [0, 2], [2, 1], [2, 2], [0, 3], [3, 1]];
  withPool(t, model, (tools, meta) => {
    for (const [a, b] of pairs) {
      for (const verbose of [false, true]) {
        const L = model.devices[a];
        const R = model.devices[b];
        const args = ['--snap1', String(L.info.devId), '--snap2', String(R.info.devId), ...(verbose ? ['--verbose'] : [])];
        const got = ok(tools.delta(meta, args), 'thin_delta').stdout;
        const side = (d: DumpDevice) => ({ devId: d.info.devId, mappings: d.mappings.map((m) => ({ originBegin: m.origin, dataBegin: m.data, length: 1 })) });
        assert.equal(formatDelta(model.sb, side(L), side(R), { verbose, dialect: tools.flavour }), got, `${tools.flavour} ${args.join(' ')}`);
      }
    }
  });
});

test('thin_delta: the example of spec 10.4, as printed by 0.9.0', () => {
  const model = pool([
    dev(0, [[0, 0, 100], [200, 150, 1], [300, 160, 10, 1]]),
    dev(1, [[0, 0, 50], [50, 200, 1, 1], [51, 51, 49], [200, 150, 1]]),
  ], 128, 1024);
  model.sb.time = 1;
  model.sb.transaction = 2;
  const side = (d: DumpDevice) => ({ devId: d.info.devId, mappings: d.mappings.map((m) => ({ originBegin: m.origin, dataBegin: m.data, length: 1 })) });
  assert.equal(
    formatDelta(model.sb, side(model.devices[0]), side(model.devices[1])),
    `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1024">
  <diff left="0" right="1">
    <same begin="0" length="50"/>
    <different begin="50" length="1"/>
    <same begin="51" length="49"/>
    <same begin="200" length="1"/>
    <left_only begin="300" length="10"/>
  </diff>
</superblock>
`,
  );
  assert.equal(
    formatDelta({ ...model.sb, metadataSnap: 6 }, side(model.devices[0]), side(model.devices[1]), { verbose: true }),
    `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1024" metadata_snap="6">
  <diff left="0" right="1">
    <same>
      <range begin="0" data_begin="0" length="50"/>
    </same>
    <different>
      <range begin="50" left_data_begin="50" right_data_begin="200" length="1"/>
    </different>
    <same>
      <range begin="51" data_begin="51" length="49"/>
      <range begin="200" data_begin="150" length="1"/>
    </same>
    <left_only>
      <range begin="300" data_begin="160" length="10"/>
    </left_only>
  </diff>
</superblock>
`,
  );
});

test('rows without sharing counts serve every column that needs none, and refuse the others', () => {
  assert.equal(needsSharing(DEFAULT_LS_FIELDS), false, "thin_ls's default columns need no pass over the mappings");
  const noSharing = LS_FIELDS.filter((f) => !needsSharing([f]));
  assert.deepEqual(noSharing, ['DEV', 'MAPPED_BLOCKS', 'MAPPED_SECTORS', 'MAPPED_BYTES', 'MAPPED', 'TRANSACTION', 'CREATE_TIME', 'SNAP_TIME']);
  const row = { devId: 3, mappedBlocks: 10, transaction: 1, creationTime: 0, snapTime: 2 };
  const opts = { fields: noSharing, dataBlockSize: 128 };
  assert.equal(formatLs([row], opts), formatLs([{ ...row, exclusiveBlocks: 4 }], opts));
  for (const f of LS_FIELDS.filter((x) => needsSharing([x]))) {
    assert.throws(() => formatLs([row], { fields: [f], dataBlockSize: 128 }), (e: unknown) => isThinError(e, 'E_INVALID'), f);
  }
});
