/**
 * The issue's real image (src/experiments/debian-python-image.ts: Debian minbase, python3,
 * an app layer deleting /usr/share/doc/*) imported with `thinsim image import` into a fresh
 * pool: the mounted top layer holds exactly the tree `umoci unpack` makes of the same
 * archive: every entry's type, mode, owner, mtime (files), content sha256 and link target,
 * and the same hard-link groups. One import; a few minutes the first time (mmdebstrap).
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { debianPythonImage } from '../../src/experiments/debian-python-image';
import type { BuiltImage } from '../../src/experiments/dc-image';
import { LayerStore } from '../../src/layers/snapshotter';
import { findTool, runToolOk } from '../../src/tools';
import { thinsimAsync, thinsimOk } from '../helpers/cli';
import { mountSkipReason, ours } from './helpers';
import { compareTrees, walkTree } from './image-fixtures';

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mmdebstrap and umoci keep owners; loop mounts)';
  const gone = ['mmdebstrap', 'umoci', 'skopeo'].filter((t) => !findTool(t));
  if (gone.length) return `needs ${gone.join(', ')} (apt-get install ${gone.join(' ')})`;
  return mountSkipReason();
}
const skip = skipReason();
if (skip) console.log(`# debian image test skipped: ${skip}`);

/** Hard-link groups: the sorted paths of each inode with more than one name, as sorted lines. */
async function hardLinkGroups(root: string): Promise<string[]> {
  const byInode = new Map<number, string[]>();
  const visit = async (rel: string): Promise<void> => {
    for (const name of await fsp.readdir(path.join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(path.join(root, r));
      if (st.isDirectory()) { if (r !== 'lost+found') await visit(r); continue; }
      if (st.nlink > 1) byInode.set(st.ino, [...(byInode.get(st.ino) ?? []), r]);
    }
  };
  await visit('');
  return [...byInode.values()].map((g) => g.sort().join(' = ')).sort();
}

describe('the Debian + python3 + app image through thinsim image import', { skip, timeout: 3_600_000 }, () => {
  let work: string;
  let img: BuiltImage;
  let oracle: string;
  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-debian-image-'));
    img = await debianPythonImage((l) => console.log(l));
    console.log(`image ${img.file} (${(fs.statSync(img.file).size / 2 ** 20).toFixed(0)} MiB, ${img.cached ? 'cached' : `built in ${img.buildSeconds.toFixed(0)} s`})`);
    const layout = path.join(work, 'oci');
    await runToolOk('skopeo', ['copy', '--quiet', `docker-archive:${img.file}`, `oci:${layout}:img`], 'skopeo copy to an OCI layout', 600_000);
    await runToolOk('umoci', ['unpack', '--image', `${layout}:img`, path.join(work, 'bundle')], 'umoci unpack', 600_000);
    oracle = path.join(work, 'bundle', 'rootfs');
  });
  after(() => {
    assert.deepEqual(ours(), [], 'no layer mount is left');
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('every file, link and hard link of umoci unpack is in the imported top layer, and nothing else', async () => {
    const pool = path.join(work, 'pool');
    thinsimOk(['pool', 'create', pool, '--data-size', '4G', '--metadata-size', '64M']);
    const r = await thinsimAsync(['image', 'import', pool, img.file, '--base-size', '2G', '--json'], { timeoutMs: 1_800_000 });
    assert.equal(r.status, 0, `thinsim image import failed: ${r.stderr}`);
    const report = JSON.parse(r.stdout) as { images: { tags: string[]; layers: { name: string; files: number; whiteouts: number }[] }[] };
    assert.equal(report.images.length, 1);
    const layers = report.images[0].layers;
    assert.equal(layers.length, 3);
    assert.ok(layers[2].whiteouts > 50, `the app layer's /usr/share/doc whiteouts were applied (${layers[2].whiteouts})`);

    const want = await walkTree(oracle);
    const wantLinks = await hardLinkGroups(oracle);
    const store = await LayerStore.openReadOnly(pool);
    let got: Awaited<ReturnType<typeof walkTree>>;
    let gotLinks: string[];
    try {
      ({ got, gotLinks } = await store.withMounted(layers[2].name, async (d) => ({ got: await walkTree(d), gotLinks: await hardLinkGroups(d) }), { readOnly: true }));
    } finally {
      await store.close();
    }
    // The oracle is the real image, not an empty or partial tree.
    assert.ok(want.size > 8000, `umoci unpack made ${want.size} entries`);
    assert.ok(want.get('usr/bin/python3.11')?.type === 'file', 'python3 is in the image');
    assert.equal(want.get('app/data/model.bin')?.uid, 1000);
    assert.equal(want.get('usr/local/bin/app')?.link, '/app/app.py');
    assert.deepEqual([...want.keys()].filter((k) => k.startsWith('usr/share/doc/')), [], '/usr/share/doc is emptied by whiteouts');
    assert.ok(wantLinks.includes('app/app.py = app/main.py'), 'the app layer\'s hard link');
    assert.ok(wantLinks.length > 1, `hard links from Debian too: ${wantLinks.join('; ')}`);

    console.log(`compared ${want.size} entries and ${wantLinks.length} hard-link groups`);
    const diffs = compareTrees(want, got);
    assert.deepEqual(diffs.slice(0, 50), [], `${diffs.length} differences`);
    assert.deepEqual(gotLinks, wantLinks);
  });
});
