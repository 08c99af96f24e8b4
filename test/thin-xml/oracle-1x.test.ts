/** Random models against thin-provisioning-tools 1.x (see oracle-common.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ok, skipPart, skipReason, tmpdir, tools09, tools1x } from '../helpers/oracle';
import { genModel, parseModel, type DumpModel } from '../helpers/thin-model';
import { XmlWriter } from '../../src/thin/xml/writer';
import { suiteSeeds } from '../helpers/seeds';
import { checkDelta, checkLs, render, restore } from './oracle-common';

test('thin-provisioning-tools 1.x as oracle for random models', async (t) => {
  const t1 = tools1x();
  if (!t1) return t.skip(skipReason.tools1x);
  const t09 = tools09();
  // 1.x's thin_check and thin_ls each sleep 0.5 s, so fewer models than for 0.9.0.
  for (const seed of suiteSeeds(10, 1000)) {
    await t.test(`seed ${seed}`, (tt) => {
      const dir = tmpdir();
      try {
        const model = genModel(seed, { dupWithinDevice: false });
        const xml = render((out) => new XmlWriter(out), model, seed);
        const meta = restore(t1, dir, xml, 'm1');
        ok(t1.check(meta), 'thin_check 1.x');

        // 1.x restore always writes version 2 and drops flags.
        const want: DumpModel = { ...model, sb: { ...model.sb, version: 2, flags: 0 } };
        const dump1 = ok(t1.dump(meta), 'thin_dump 1.x').stdout;
        assert.deepStrictEqual(parseModel(dump1), want, 'reader gives back the model from 1.x thin_dump');

        if (t09) {
          // The flat 0.9.0 dump of the 1.x-restored file is our XML with 1.x's superblock fields.
          const dump09 = ok(t09.dump(meta), 'thin_dump 0.9.0 of 1.x file').stdout;
          assert.equal(dump09, render((out) => new XmlWriter(out), want, seed));
        } else {
          skipPart(tt, 'thin_dump 0.9.0 of the 1.x-restored file', skipReason.tools09);
        }
        checkLs(t1, meta, model, '1.x', true);
        checkDelta(t1, meta, model, seed);
      } finally {
        dir.cleanup();
      }
    });
  }
});

