/**
 * block-size --quick: copy-on-write amplification grows with the chunk size, and the
 * space the layers used equals the model: per layer, one chunk per distinct chunk its
 * 4 KiB writes touched (the base is fully mapped, every layer starts fully shared).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockSizeParams, CHUNK_SIZES, layerOffsets } from '../../src/experiments/block-size';
import { browserSkip, checkReportInBrowser } from './browser';
import { MiB, quickRun, rows } from './helpers';

test('block-size --quick: layer space matches the chunk model; amplification grows with chunk size', async (t) => {
  const r = await quickRun(t, 'block-size');
  const amp = rows(r, 'amplification');
  assert.equal(amp.length, CHUNK_SIZES.length);
  const p = blockSizeParams({ size: r.report.params['device size'] as number, quick: true });
  const repeat = r.report.params.repeat as number;
  for (const [i, chunk] of CHUNK_SIZES.entries()) {
    const perRep: number[] = [];
    for (let rep = 0; rep < repeat; rep++) {
      let chunks = 0;
      for (let k = 1; k <= p.layers + 1; k++) chunks += new Set(layerOffsets(p, 7 + rep, k).map((o) => Math.floor(o / chunk))).size;
      perRep.push(chunks * chunk / MiB);
    }
    perRep.sort((a, b) => a - b);
    const model = repeat % 2 ? perRep[(repeat - 1) / 2] : (perRep[repeat / 2 - 1] + perRep[repeat / 2]) / 2;
    assert.equal(amp[i]['layer space used MiB'], model, `${amp[i]['chunk size']}: layer space = distinct chunks touched x chunk size`);
  }
  for (let i = 1; i < amp.length; i++) {
    assert.ok(amp[i]['CoW amplification'] >= amp[i - 1]['CoW amplification'], `amplification does not shrink from ${amp[i - 1]['chunk size']} to ${amp[i]['chunk size']}`);
  }
  assert.ok(amp[amp.length - 1]['CoW amplification'] > 2 * amp[0]['CoW amplification'], '1M chunks cost far more copy-on-write space than 64K ones');
  const md = rows(r, 'metadata');
  assert.ok(md[0]['metadata blocks'] > md[md.length - 1]['metadata blocks'], 'more, smaller mappings need more metadata');
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});
