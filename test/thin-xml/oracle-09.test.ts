/** Random models against thin-provisioning-tools 0.9.0 (see oracle-common.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ok, skipReason, tmpdir, tools09 } from '../helpers/oracle';
import { genModel, parseModel, type DumpModel } from '../helpers/thin-model';
import { HumanReadableWriter, XmlWriter } from '../../src/thin/xml/writer';
import { formatDelta } from '../../src/thin/report/delta-format';
import { formatLs } from '../../src/thin/report/ls-format';
import { suiteSeeds } from '../helpers/seeds';
import { checkDelta, checkLs, render, restore } from './oracle-common';

test('thin-provisioning-tools 0.9.0 as oracle for random models', async (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  for (const seed of suiteSeeds(16, 1000)) {
    await t.test(`seed ${seed}`, () => {
      const dir = tmpdir();
      try {
        const model = genModel(seed);
        const xml = render((out) => new XmlWriter(out, { flushBytes: 1 + (seed % 5000) }), model, seed);
        const meta = restore(t09, dir, xml, 'm09');
        ok(t09.check(meta), 'thin_check 0.9.0');

        const dump = ok(t09.dump(meta), 'thin_dump').stdout;
        assert.equal(dump, xml, 'thin_dump of thin_restore of our XML equals our XML');
        assert.deepStrictEqual(parseModel(dump), model, 'reader gives back the model from thin_dump output');

        const hr = ok(t09.dump(meta, ['-f', 'human_readable']), 'thin_dump -f human_readable').stdout;
        assert.equal(render((out) => new HumanReadableWriter(out), model, seed), hr, 'human_readable');

        checkLs(t09, meta, model, '0.9');
        checkDelta(t09, meta, model, seed);
      } finally {
        dir.cleanup();
      }
    });
  }
});

test('0.9.0 keeps superblock flags; our writer prints them as thin_dump does', (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  const dir = tmpdir();
  try {
    const model = genModel(7);
    model.sb.flags = 1;
    const xml = render((out) => new XmlWriter(out), model, 7);
    const meta = restore(t09, dir, xml, 'flags');
    assert.equal(ok(t09.dump(meta), 'thin_dump').stdout, xml);
  } finally {
    dir.cleanup();
  }
});

test('an empty pool and empty devices print like the tools', (t) => {
  const t09 = tools09();
  if (!t09) return t.skip(skipReason.tools09);
  const dir = tmpdir();
  try {
    const sb = { uuid: '', time: 0, transaction: 0, flags: 0, version: 1, dataBlockSize: 128, nrDataBlocks: 100 };
    const empty: DumpModel = { sb, devices: [] };
    let meta = restore(t09, dir, render((out) => new XmlWriter(out), empty, 1), 'empty');
    assert.equal(ok(t09.dump(meta), 'thin_dump').stdout, render((out) => new XmlWriter(out), empty, 1));
    assert.equal(ok(t09.dump(meta, ['-f', 'human_readable']), 'hr').stdout, render((out) => new HumanReadableWriter(out), empty, 1));
    assert.equal(ok(t09.ls(meta), 'ls').stdout, formatLs([], { dataBlockSize: 128 }));
    assert.equal(ok(t09.ls(meta, ['--no-headers']), 'ls').stdout, '');

    const dev = (devId: number) => ({ info: { devId, mappedBlocks: 0, transaction: 0, creationTime: 0, snapTime: 0 }, mappings: [] });
    const two: DumpModel = { sb, devices: [dev(3), dev(9)] };
    meta = restore(t09, dir, render((out) => new XmlWriter(out), two, 1), 'two');
    assert.equal(ok(t09.dump(meta), 'thin_dump').stdout, render((out) => new XmlWriter(out), two, 1));
    assert.equal(ok(t09.dump(meta, ['-f', 'human_readable']), 'hr').stdout, render((out) => new HumanReadableWriter(out), two, 1));
    for (const verbose of [false, true]) {
      const args = ['--snap1', '3', '--snap2', '9', ...(verbose ? ['--verbose'] : [])];
      assert.equal(ok(t09.delta(meta, args), 'delta').stdout, formatDelta(sb, { devId: 3, mappings: [] }, { devId: 9, mappings: [] }, { verbose }));
    }
  } finally {
    dir.cleanup();
  }
});
