/**
 * driver-compare --quick: one generated image stored as thin snapshots with ext4 and as
 * overlay2 diff directories; the figures are consistent with how each driver works:
 * overlay2's first small write copies the whole file up, devicemapper's copies a chunk or
 * a few (64 KiB each); N containers changing a few files grow both stores by far less than
 * N images; page cache holds one copy under overlay2 and one per container under
 * devicemapper; the report renders in headless Chromium.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generatedImage } from '../../src/experiments/dc-image';
import { realFilesystemBlocker } from '../../src/experiments/demo';
import { Overlay2Store, overlayUnavailable } from '../../src/experiments/overlay2';
import { findTool } from '../../src/tools';
import { browserSkip, checkReportInBrowser } from './browser';
import { quickRun, rows } from './helpers';

const KiB = 1024;

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (overlay mounts, whiteout device nodes, mount -o loop of the devicemapper layers)';
  const o = overlayUnavailable();
  if (o) return o;
  if (!findTool('setfattr')) return 'setfattr is not installed (Debian package attr)';
  const d = realFilesystemBlocker();
  if (d) return `devicemapper layers cannot carry ext4 here: ${d}`;
  if (!findTool('fincore')) return 'fincore is not installed (util-linux)';
  return false;
}

test('driver-compare --quick: copy-up vs chunk copy, N containers vs N images, page cache, report renders', { skip: skipReason() }, async (t) => {
  const r = await quickRun(t, 'driver-compare');
  assert.deepEqual(r.report.skipped, [], 'both drivers ran');
  const all = rows(r, 'per driver (medians)');
  const dm = all.find((x) => x.driver === 'devicemapper')!;
  const o2 = all.find((x) => x.driver === 'overlay2')!;
  const big = r.report.params['big file bytes'] as number;
  const N = r.report.params.containers as number;

  // overlay2: the first 4 KiB write copies the whole file up (plus a few directory blocks copied up with it).
  const o2Bytes = o2['first write KiB'] * KiB;
  assert.ok(o2Bytes >= big && o2Bytes <= big + 256 * KiB, `overlay2 first write allocated ${o2Bytes} bytes, the file is ${big}`);
  assert.ok(o2['upper copy KiB'] * KiB >= big, 'the upper copy holds the whole file');
  // devicemapper: one 64 KiB chunk for the data, plus at most a few for ext4's inode, bitmap and journal blocks.
  const dmPool = dm['first write pool KiB'] * KiB;
  assert.ok(dmPool >= 64 * KiB && dmPool <= 16 * 64 * KiB && dmPool % (64 * KiB) === 0, `devicemapper first write took ${dmPool} bytes of pool data (whole chunks, 1..16)`);
  assert.ok(dm['first write KiB'] * KiB <= 16 * 64 * KiB, 'and the data file grew by no more than that on the host');
  assert.ok(dmPool < big / 4, 'far less than the file');

  // N containers each modifying a few files: far less than N images.
  for (const x of [dm, o2]) {
    assert.ok(x['image MiB'] > 1, `${x.driver}: the image takes space (${x['image MiB']} MiB)`);
    assert.ok(x['growth after import MiB'] < N * x['image MiB'] / 2, `${x.driver}: ${N} containers grew the store by ${x['growth after import MiB']} MiB, an image is ${x['image MiB']} MiB`);
  }
  assert.ok(o2['host inodes for the image'] > 5 * dm['host inodes for the image'], 'overlay2 spends host inodes per file, devicemapper a few files per pool');

  // Page cache: one shared copy under overlay2, one per container under devicemapper (fincore).
  const readMiB = all[0]['bytes read MiB'] / N;
  assert.ok(Math.abs(o2['cache: container files MiB'] - readMiB) <= 0.5, `overlay2 caches one copy: ${o2['cache: container files MiB']} vs ${readMiB} MiB`);
  assert.ok(dm['cache: container files MiB'] >= (N - 0.5) * readMiB, `devicemapper caches one copy per container: ${dm['cache: container files MiB']} vs ${N} x ${readMiB} MiB`);

  assert.match(String(r.report.params.image), /generated/, '--quick uses the generated image and says so');
  assert.equal(r.report.sections.flatMap((s) => s.charts ?? []).length, 8);
  for (const f of ['report.json', 'report.md', 'report.html']) assert.ok(fs.existsSync(`${r.written.dir}/${f}`));
  await t.test('report.html renders in headless Chromium, every chart checked in the DOM', { skip: browserSkip() }, () => checkReportInBrowser(r.written.dir));
});

test('overlay2 store: whiteouts as overlayfs reads them, and the merged view hides what the image deleted', { skip: process.getuid?.() !== 0 ? 'needs root' : (overlayUnavailable() ?? (findTool('setfattr') ? false : 'setfattr is not installed (Debian package attr)')) }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-o2-'));
  const store = new Overlay2Store(path.join(dir, 'overlay2'));
  t.after(async () => { await store.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const img = await generatedImage(dir, 2 * 2 ** 20);
  const r = await store.importImage(img.file);
  assert.equal(r.layers, 3);
  assert.equal(r.whiteouts, 31);
  assert.equal(r.opaqueDirs, 1);
  const root = path.join(dir, 'overlay2');
  const layerDirs = fs.readdirSync(root).filter((d) => d !== 'l');
  assert.equal(layerDirs.length, 3);
  // Layer 2 holds /etc/issue.net as a character device 0/0; layer 3 marks /usr/share/doc opaque.
  // (Layer 1 holds the real /etc/issue.net; the layer ids are random, so look at every layer.)
  const kinds = layerDirs.map((d) => path.join(root, d, 'diff/etc/issue.net')).filter((p) => fs.existsSync(p)).map((p) => fs.lstatSync(p));
  assert.equal(kinds.length, 2, 'the file in layer 1, its whiteout in layer 2');
  assert.equal(kinds.filter((st) => st.isCharacterDevice() && st.rdev === 0).length, 1, 'a whiteout is a character device 0/0');
  const opq = layerDirs.map((d) => path.join(root, d, 'diff/usr/share/doc')).filter((p) => fs.existsSync(p))
    .map((p) => spawnSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', p], { encoding: 'utf8' }).stdout);
  assert.ok(opq.includes('y'), 'one layer marks /usr/share/doc opaque');
  for (const d of layerDirs) {
    const link = fs.readFileSync(path.join(root, d, 'link'), 'utf8');
    assert.equal(fs.readlinkSync(path.join(root, 'l', link)), `../${d}/diff`);
  }
  const c = await store.createContainer();
  const merged = await store.mount(c.id);
  assert.ok(!fs.existsSync(path.join(merged, 'etc/issue.net')), 'whited out');
  assert.deepEqual(fs.readdirSync(path.join(merged, 'usr/share/doc')), ['README'], 'opaque: only the top layer\'s docs');
  assert.ok(!fs.existsSync(path.join(merged, 'opt/app/conf/c45.conf')) && fs.existsSync(path.join(merged, 'opt/app/conf/c20.conf')));
  assert.ok(fs.readFileSync(path.join(merged, 'etc/passwd'), 'utf8').includes('app:x:1000'), 'modified in layer 3');
  assert.ok(fs.existsSync(path.join(merged, '.dockerenv')), 'the init layer is below the container layer');
  assert.match(fs.readFileSync(path.join(root, c.id, 'lower'), 'utf8'), /^l\/[A-Z0-9]{26}(:l\/[A-Z0-9]{26}){3}$/, 'lower: init + 3 image layers');
});
