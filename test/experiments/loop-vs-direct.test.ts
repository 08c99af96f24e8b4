/**
 * loop-vs-direct --quick: the host's own view (stat, fincore) against the model of
 * each backend. loop-lvm is sparse: the host holds about what the pool mapped.
 * direct-lvm is preallocated: the host holds the whole file. Discard passdown on
 * loop-lvm punches the freed blocks out of the data file; without passdown nothing
 * goes back. O_DIRECT leaves the data file out of the page cache; buffered I/O does not.
 */
import { test } from 'node:test';
import { hot } from '../../src/hot';
import assert from 'node:assert/strict';
import { which } from '../../src/experiments/host';
import { browserSkip, checkReportInBrowser } from './browser';
import { quickRun, rows } from './helpers';

test('loop-vs-direct --quick: space, discard and page cache behave as each backend should', async (t) => {
  const r = await quickRun(t, 'loop-vs-direct');
  const size = r.report.params.size as number;
  const MiB = 2 ** 20;
  // Model: thin 1 written in full (size), then one 64 KiB chunk copied per copy-on-write write,
  // min(150 quick writes, size / 64 KiB) of them.
  const mappedModel = (size + Math.min(150, size / (64 * 1024)) * 64 * 1024) / MiB;
  const host = rows(r, 'Host space per backend (median over repeats)');
  const by = (b: string) => host.find((x) => x.backend === b);
  const loop = by('loop-lvm')!;
  assert.equal(loop['mapped data MiB'], mappedModel, 'pool mapped what the workload wrote');
  assert.ok(loop['allocated MiB'] >= 0.95 * mappedModel && loop['allocated MiB'] <= mappedModel + 2, `loop-lvm: host allocation ${loop['allocated MiB']} MiB stays near the mapped ${mappedModel} MiB`);
  assert.ok(loop['apparent MiB'] > loop['allocated MiB'], 'loop-lvm: the data file is sparse');
  const skipped = (part: string) => r.report.skipped.find((s) => s.part === part)?.reason;
  const fileSkip = skipped('direct-lvm on a preallocated file');
  const loopSkip = fileSkip ?? skipped('direct-lvm on a loop block device');
  for (const b of ['direct-lvm file', 'direct-lvm loopdev']) {
    await t.test(`${b}: host allocation = the preallocated size`, { skip: (b.endsWith('loopdev') ? loopSkip : fileSkip) ?? false }, () => {
      const d = by(b)!;
      assert.ok(Math.abs(d['allocated MiB'] - d['apparent MiB']) < 0.01, `${b}: host allocation ${d['allocated MiB']} = preallocated size ${d['apparent MiB']}`);
      assert.equal(d['mapped data MiB'], mappedModel);
    });
  }

  const rm = rows(r, 'Layer removal (median over repeats)');
  const rmBy = (c: string) => rm.find((x) => x.config === c)!;
  // The twin zeroes by writing zeros; only the addon's fallocate punches holes.
  await t.test('loop-lvm: passdown gives the layer back to the host', { skip: hot.native ? false : 'punching holes (discard passdown) needs the native addon' }, () => {
    const pd = rmBy('loop-lvm / passdown');
    assert.ok(pd['given back to host MiB'] >= 0.9 * pd['pool mapped before MiB'], `loop-lvm passdown gives the layer back (${pd['given back to host MiB']} of ${pd['pool mapped before MiB']} MiB)`);
  });
  for (const row of rm.filter((x) => String(x.config).endsWith('/ nopassdown'))) {
    assert.ok(Math.abs(row['given back to host MiB']) < 0.1, `${row.config}: nothing goes back without passdown (${row['given back to host MiB']} MiB)`);
    assert.equal(row['pool mapped after MiB'], 0, `${row.config}: the pool itself freed the blocks`);
  }

  await t.test('O_DIRECT keeps the data file out of the page cache; buffered I/O does not', { skip: which('fincore') ? fileSkip ?? false : 'fincore (util-linux) is missing' }, () => {
    const cache = rows(r, 'Cache and writeback per backend (median over repeats)');
    const c = (b: string) => cache.find((x) => x.backend === b);
    assert.ok(c('loop-lvm')!['data file cached after writes MiB'] >= 0.5 * mappedModel, 'buffered writes leave the data in the page cache');
    assert.ok(c('direct-lvm file')!['data file cached after writes MiB'] < 1, 'O_DIRECT keeps the data file out of the page cache');
  });

  const all = rows(r, 'All workloads: throughput over repeats, latency over every operation');
  for (const w of all.filter((x) => x.workload !== 'layer removal (discard + delete)')) {
    assert.ok(w['MiB/s median'] > 0 && Number.isFinite(w['MiB/s median']), `${w.workload} on ${w.backend} measured`);
    assert.ok(w['MiB/s min'] <= w['MiB/s median'] && w['MiB/s median'] <= w['MiB/s max']);
    assert.ok(w['p50 ms'] <= w['p99 ms']);
  }
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});
