/**
 * driver-compare --via containerd --quick (driver-compare-containerd): the figures taken
 * through a real containerd and runc agree with how each snapshotter stores files:
 * overlayfs's first small write copies the whole file up, thinsim's a few 64 KiB chunks;
 * overlayfs spends a host inode per file, thinsim a few per pool; page cache holds one copy
 * under overlayfs and one per container under thinsim (fincore). The report is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { containerdMissing } from '../../src/containerd/daemon';
import { findTool } from '../../src/tools';
import { quickRun, rows } from '../experiments/helpers';
import { attachMissing } from './helpers';

const KiB = 1024;
const MiB = 1024 * KiB;
const skip = containerdMissing() ?? attachMissing() ?? ['mmdebstrap', 'umoci', 'skopeo', 'fincore'].map((t) => (findTool(t) ? undefined : `${t} is not installed`)).find(Boolean) ?? false;

test('driver-compare --via containerd --quick: copy-up vs chunks, host inodes, page cache per container', { skip, timeout: 1_800_000 }, async (t) => {
  const r = await quickRun(t, 'driver-compare-containerd');
  assert.deepEqual(r.report.skipped, [], 'both snapshotters ran');
  const all = rows(r, 'per snapshotter (medians)');
  const th = all.find((x) => x.snapshotter === 'thinsim')!;
  const ov = all.find((x) => x.snapshotter === 'overlayfs')!;
  const big = r.report.params['big file bytes'] as number;
  const N = r.report.params.containers as number;
  assert.ok(ov['first write KiB'] * KiB >= big, `overlayfs copies the ${big}-byte file up: ${ov['first write KiB']} KiB`);
  assert.ok(th['first write KiB'] * KiB <= 16 * 64 * KiB, `thinsim copies chunks: ${th['first write KiB']} KiB`);
  assert.ok(ov['host inodes for the image'] > 100 * Math.max(1, th['host inodes for the image']), 'overlayfs spends host inodes per file');
  for (const x of [th, ov]) assert.ok(x['image MiB'] > 50, `${x.snapshotter}: the Debian image takes space (${x['image MiB']} MiB)`);
  const readMiB = (big + 2 * MiB) / MiB;
  assert.ok(Math.abs(ov['cache: files read MiB'] - readMiB) <= 0.5, `overlayfs caches one copy: ${ov['cache: files read MiB']} vs ${readMiB} MiB`);
  assert.ok(th['cache: files read MiB'] >= (N - 0.5) * readMiB, `thinsim caches one copy per container: ${th['cache: files read MiB']} vs ${N} x ${readMiB} MiB`);
  for (const f of ['report.json', 'report.md', 'report.html']) assert.ok(fs.existsSync(`${r.written.dir}/${f}`));
});
