/**
 * layer-depth --quick: both stacks measured at every depth; dm-thin snapshots are
 * O(1) (a snapshot shares its origin's mapping subtree), so a read on the top of a
 * deep chain costs about what it costs on a shallow one. qcow2 chains need
 * qemu-img and qemu-io: without them that half is reported as skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { depths } from '../../src/experiments/layer-depth';
import { which } from '../../src/experiments/host';
import { browserSkip, checkReportInBrowser } from './browser';
import { quickRun, rows } from './helpers';

test('layer-depth --quick: thin reads do not grow with depth; qcow2 measured beside them', async (t) => {
  const r = await quickRun(t, 'layer-depth');
  const ds = depths(true);
  const haveQemu = !!(which('qemu-img') && which('qemu-io'));
  // Each half is checked once: thinsim's here, qcow2's in its own subtest (skipped, and
  // reported as skipped by the experiment, where qemu is missing).
  for (const op of ['read', 'write']) {
    const data = rows(r, `depth-${op}`);
    const got = data.filter((x) => x.implementation === 'thinsim snapshots').map((x) => x.depth);
    assert.deepEqual(got, ds, `thinsim snapshots ${op}s measured at every depth`);
    for (const x of data) assert.ok(x['µs per op median'] > 0 && Number.isFinite(x['µs per op median']), `${x.implementation} ${op} at depth ${x.depth}: a measured time`);
  }
  if (!haveQemu) assert.ok(r.report.skipped.some((s) => s.part === 'qcow2 backing chains'), 'the qcow2 half says why it was skipped');
  await t.test('qcow2 chains measured at every depth', { skip: haveQemu ? false : 'qemu-img / qemu-io (qemu-utils) are missing' }, () => {
    for (const op of ['read', 'write']) {
      assert.deepEqual(rows(r, `depth-${op}`).filter((x) => x.implementation === 'qcow2 chain').map((x) => x.depth), ds, `qcow2 chain ${op}s measured at every depth`);
    }
  });
  const reads = rows(r, 'depth-read').filter((x) => x.implementation === 'thinsim snapshots');
  // p50, not the mean: on a shared machine the mean carries other tenants' stalls.
  assert.ok(reads[reads.length - 1]['p50 ms'] < 4 * reads[0]['p50 ms'] + 0.05, `thin read p50 at depth ${ds[ds.length - 1]} (${reads[reads.length - 1]['p50 ms']} ms) stays near depth ${ds[0]} (${reads[0]['p50 ms']} ms)`);
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});
