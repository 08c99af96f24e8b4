/**
 * metadata-size --quick: measured metadata grows with mapped blocks and with
 * snapshots; the thin_metadata_size column is what the real tool says (run here
 * again as the oracle); the rule of thumb is 48 bytes per block (at least 2 MiB);
 * and the answer to the 100G question puts Docker's 2G far above every estimate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { which } from '../../src/experiments/host';
import { browserSkip, checkReportInBrowser } from './browser';
import { MiB, quickRun, rows } from './helpers';

test('metadata-size --quick: measured vs thin_metadata_size vs the rule of thumb', async (t) => {
  const r = await quickRun(t, 'metadata-size');
  const mapped = rows(r, 'Mapped-blocks series');
  const snaps = rows(r, 'Snapshot series');
  for (const s of [mapped, snaps]) {
    for (let i = 1; i < s.length; i++) assert.ok(s[i]['measured blocks'] > s[i - 1]['measured blocks'], 'metadata grows along the series');
  }
  for (const row of snaps) {
    assert.equal(row['total mappings'], row['mapped blocks'] * (1 + row.snapshots), 'every snapshot maps every block of its origin (shared)');
  }
  for (const row of [...mapped, ...snaps]) {
    assert.equal(row['rule of thumb MiB'], Math.max(2 * MiB, 48 * row['mapped blocks']) / MiB);
  }
  if (which('thin_metadata_size')) {
    const last = mapped[mapped.length - 1];
    const out = spawnSync('thin_metadata_size', ['-b', '64k', '-s', `${last['mapped blocks'] * 64}k`, '-m', '1', '-u', 'b', '-n'], { encoding: 'utf8' });
    assert.equal(last['thin_metadata_size 0.9 MiB'], Number(out.stdout.trim()) / MiB, 'the estimate column is thin_metadata_size\'s own answer');
  } else {
    t.diagnostic('thin_metadata_size oracle skipped: thin-provisioning-tools is not installed');
  }
  const answer = rows(r, 'answer-100g');
  const docker = answer.find((x) => x.estimate === 'Docker default')!;
  assert.equal(docker.MiB, 2048);
  const rule = answer.find((x) => String(x.estimate).startsWith('rule of thumb'))!;
  assert.equal(rule.MiB, 48 * (100 * 2 ** 30 / 65536) / MiB, '48 bytes x 1638400 blocks = 75 MiB');
  for (const a of answer.filter((x) => x !== docker && typeof x.MiB === 'number')) assert.ok(a.MiB * 10 < docker.MiB, `${a.estimate}: ${a.MiB} MiB is far below 2G`);
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});
