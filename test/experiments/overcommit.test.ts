/**
 * overcommit --quick: the dm-thin no-space policies as the kernel documents them
 * (thin-provisioning.rst): error_if_no_space fails writes with ENOSPC at once; the
 * queue policy holds them until a resize (then they complete) or until
 * no_space_timeout (then they fail). The low-water mark fires once free blocks fall
 * to the threshold.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browserSkip, checkReportInBrowser } from './browser';
import { MiB, quickRun, rows } from './helpers';

test('overcommit --quick: ENOSPC at once, queued writes complete after resize, time out without one', async (t) => {
  const r = await quickRun(t, 'overcommit');
  const poolBytes = r.report.params['pool size'] as number;
  const timeoutMs = (r.report.params['no_space_timeout s'] as number) * 1000;
  const blocks = poolBytes / (64 * 1024);
  const lwm = Math.floor(blocks / 4);
  const w = rows(r, 'Each write at exhaustion');
  const of = (p: string) => w.filter((x) => x.policy === p);
  assert.ok(of('error_if_no_space').length > 0);
  for (const x of of('error_if_no_space')) {
    assert.equal(x.outcome, 'ENOSPC');
    assert.equal(x.code, 'ENOSPC');
    assert.ok(x['waited ms'] < timeoutMs / 2, `error_if_no_space fails at once, not after no_space_timeout (${x['waited ms']} ms)`);
  }
  for (const x of of('queue + resize')) {
    assert.equal(x.outcome, 'completed', 'queued writes complete after the resize');
    assert.ok(x['waited ms'] < timeoutMs, 'they completed before no_space_timeout');
  }
  assert.ok(of('queue + resize').some((x) => x['waited ms'] >= 200), 'the first write waited for the resize');
  for (const x of of('queue, no resize')) {
    assert.equal(x.outcome, 'failed');
    assert.equal(x.code, 'ENOSPC');
    assert.ok(x['waited ms'] >= timeoutMs * 0.9, `without a resize a queued write fails after no_space_timeout (${x['waited ms']} ms)`);
  }
  const ev = rows(r, 'Events per trial');
  for (const e of ev) {
    assert.ok(e['free blocks then'] <= lwm && e['free blocks then'] > lwm - 4, `low-water mark fired at ${e['free blocks then']} free blocks (threshold ${lwm})`);
    const at = (blocks - lwm) * 64 * 1024 / MiB;
    assert.ok(e['low-water mark at written MiB'] <= at && e['low-water mark at written MiB'] >= at - 0.25, 'fired during the write that crossed it');
    if (e.policy === 'queue + resize') {
      assert.equal(e['pool size after MiB'], 2 * poolBytes / MiB);
      assert.equal(e['first write queued'], true);
      assert.match(e['modes seen'], /out_of_data_space.*rw/);
    }
    if (e.policy === 'error_if_no_space') assert.equal(e['pool used after MiB'], poolBytes / MiB, 'the pool filled up completely');
  }
  const curve = rows(r, 'fill-curve').filter((x) => x.policy === 'error_if_no_space');
  for (const c of curve) assert.equal(c['pool used MiB'], c['written MiB'], 'each new write provisions exactly its bytes (64K-aligned 256K writes)');
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});
