/**
 * block-size --quick: copy-on-write amplification grows with the chunk size, and the
 * space the layers used matches a model built here from the workload the report
 * states (its parameters and bytes written), not from the experiment's own functions:
 * each layer is a snapshot of the one below that rewrites n random 4 KiB blocks, so it
 * owns one chunk per distinct chunk those writes hit. For n uniform writes over C
 * chunks that count has a known mean and variance (occupancy of C bins by n balls).
 * Geometry adds exact bounds: with the same offsets at every chunk size, doubling the
 * chunk size at least keeps and at most doubles the space.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browserSkip, checkReportInBrowser } from './browser';
import { MiB, quickRun, rows } from './helpers';

/** "64K", "1M" -> bytes (the report's chunk size labels). */
function chunkBytes(label: string): number {
  const m = /^(\d+)([KM])$/.exec(label);
  assert.ok(m, `chunk size label ${label}`);
  return Number(m[1]) * (m[2] === 'K' ? 1024 : MiB);
}

/** Mean and variance of the number of distinct chunks n uniform 4 KiB writes hit among C chunks. */
function occupancy(C: number, n: number): { mean: number; variance: number } {
  const empty1 = (1 - 1 / C) ** n;
  const empty2 = (1 - 2 / C) ** n;
  return { mean: C * (1 - empty1), variance: C * empty1 + C * (C - 1) * empty2 - C * C * empty1 * empty1 };
}

test('block-size --quick: layer space matches the chunk model; amplification grows with chunk size', async (t) => {
  const r = await quickRun(t, 'block-size');
  const amp = rows(r, 'amplification');
  assert.deepEqual(amp.map((x) => x['chunk size']), ['64K', '128K', '256K', '512K', '1M'], 'every chunk size from 64K to 1M, in order');
  const size = r.report.params['device size'] as number;
  const layers = (r.report.params['image layers'] as number) + (r.report.params['container layer'] as number);
  for (const row of amp) {
    const chunk = chunkBytes(row['chunk size']);
    const writes = row['layer bytes written MiB'] * MiB / 4096;
    assert.ok(Number.isInteger(writes) && writes % layers === 0, `${row['chunk size']}: whole 4 KiB writes, the same number per layer (${writes} over ${layers})`);
    const perLayer = occupancy(size / chunk, writes / layers);
    const mean = layers * perLayer.mean;
    const sd = Math.sqrt(layers * perLayer.variance);
    const got = row['layer space used MiB'] * MiB / chunk;
    // A median over repeats: whole chunks, or halfway between two counts for an even number of repeats.
    assert.ok(Number.isInteger(2 * got), `${row['chunk size']}: layer space is whole chunks (${got})`);
    t.diagnostic(`${row['chunk size']}: ${got} chunks, model ${mean.toFixed(1)} +- ${sd.toFixed(1)}`);
    assert.ok(got <= layers * Math.min(writes / layers, size / chunk), `${row['chunk size']}: no more chunks than writes or than the device holds (${got})`);
    assert.ok(Math.abs(got - mean) <= 6 * sd + 1, `${row['chunk size']}: ${got} chunks owned by the layers, model ${mean.toFixed(1)} +- ${sd.toFixed(1)}`);
  }
  for (let i = 1; i < amp.length; i++) {
    const [a, b] = [amp[i - 1]['layer space used MiB'], amp[i]['layer space used MiB']];
    assert.ok(b >= a && b <= 2 * a, `${amp[i]['chunk size']} layer space (${b} MiB) is between ${amp[i - 1]['chunk size']}'s (${a} MiB) and twice it`);
  }
  for (let i = 1; i < amp.length; i++) {
    assert.ok(amp[i]['CoW amplification'] >= amp[i - 1]['CoW amplification'], `amplification does not shrink from ${amp[i - 1]['chunk size']} to ${amp[i]['chunk size']}`);
  }
  assert.ok(amp[amp.length - 1]['CoW amplification'] > 2 * amp[0]['CoW amplification'], '1M chunks cost far more copy-on-write space than 64K ones');
  const md = rows(r, 'metadata');
  assert.ok(md[0]['metadata blocks'] > md[md.length - 1]['metadata blocks'], 'more, smaller mappings need more metadata');
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});
