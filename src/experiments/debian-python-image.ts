/**
 * The test image of issue 16: a real three-layer Debian image, the shape of a small Python
 * application image.
 *
 * - layer 1: bookworm minbase from `mmdebstrap --variant=minbase` and this machine's apt
 *   sources (~170 MB, the same cached tarball driver-compare starts from);
 * - layer 2: python3 and its libraries: the bundle's tree is replaced by a second
 *   mmdebstrap tarball made with --include=python3, and `umoci repack` computes the diff
 *   (added files, and the files package installation rewrote: dpkg's status, caches);
 * - layer 3: an app layer: everything under /usr/share/doc deleted (umoci writes one
 *   whiteout per deleted entry), /app owned by 1000:1000 (an executable script, a hard
 *   link to it, a package list, 20 static files, a 1 MiB data file, an empty cache dir),
 *   a /usr/local/bin/app symlink, and the app user appended to /etc/passwd and /etc/group.
 * `skopeo copy` makes the docker-archive (~215 MB, ~9,000 entries). Built with dc-image.ts's
 * machinery (cached rootfs tarballs, cachedImage) under ~/.cache/thinsim/debian-python/.
 *
 * Contract: the same recipe (sources included) gives the cached archive; every deletion in
 * layer 3 is a whiteout written by umoci, never by us.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runToolOk } from '../tools';
import { APT_SOURCES, cachedImage, debianRecipe, debianRootfsTar, type BuiltImage } from './dc-image';
import { seededContent } from './image-gen';

const RECIPE_VERSION = 1;
export const DEBIAN_PYTHON_TAG = 'thinsim/debian-python:issue16';

async function replaceTree(rootfs: string, tarball: string): Promise<void> {
  for (const e of await fsp.readdir(rootfs)) await fsp.rm(path.join(rootfs, e), { recursive: true, force: true });
  await runToolOk('tar', ['-xpf', tarball, '--numeric-owner', '-C', rootfs], `tar -x ${path.basename(tarball)}`, 1_200_000);
}

const APP_PY = `#!/usr/bin/python3
"""thinsim's test application: prints what it serves."""
import json, pathlib
root = pathlib.Path(__file__).resolve().parent
print(json.dumps(sorted(p.name for p in (root / "static").iterdir())))
`;

async function appLayer(rootfs: string): Promise<{ docEntriesDeleted: number }> {
  const doc = path.join(rootfs, 'usr/share/doc');
  const docs = await fsp.readdir(doc);
  for (const d of docs) await fsp.rm(path.join(doc, d), { recursive: true, force: true });
  const app = path.join(rootfs, 'app');
  await fsp.mkdir(path.join(app, 'static'), { recursive: true });
  await fsp.mkdir(path.join(app, 'data'));
  await fsp.mkdir(path.join(app, '.cache'));
  await fsp.writeFile(path.join(app, 'app.py'), APP_PY, { mode: 0o755 });
  await fsp.chmod(path.join(app, 'app.py'), 0o755);
  await fsp.link(path.join(app, 'app.py'), path.join(app, 'main.py'));
  await fsp.writeFile(path.join(app, 'requirements.txt'), '# standard library only\n');
  for (let i = 0; i < 20; i++) {
    const ext = i % 2 ? 'css' : 'js';
    await fsp.writeFile(path.join(app, 'static', `asset${String(i).padStart(2, '0')}.${ext}`), `/* asset ${i} */\n`.repeat(10 + i * 7));
  }
  await pipeline(seededContent(2 ** 20, 16), fs.createWriteStream(path.join(app, 'data/model.bin')));
  const chown = async (p: string) => {
    await fsp.lchown(p, 1000, 1000);
    const st = await fsp.lstat(p);
    if (st.isDirectory()) for (const e of await fsp.readdir(p)) await chown(path.join(p, e));
  };
  await chown(app);
  await fsp.mkdir(path.join(rootfs, 'usr/local/bin'), { recursive: true });
  await fsp.symlink('/app/app.py', path.join(rootfs, 'usr/local/bin/app'));
  await fsp.appendFile(path.join(rootfs, 'etc/passwd'), 'app:x:1000:1000:thinsim test app:/app:/usr/sbin/nologin\n');
  await fsp.appendFile(path.join(rootfs, 'etc/group'), 'app:x:1000:\n');
  return { docEntriesDeleted: docs.length };
}

/** Build (or take from the cache) the Debian + python3 + app image; `log` gets one line per step. */
export async function debianPythonImage(log: (l: string) => void): Promise<BuiltImage> {
  const base = debianRecipe(0);
  const recipe = { version: RECIPE_VERSION, image: 'debian-python', suite: base.suite, variant: base.variant, sources: base.sources, layer2Include: ['python3'] };
  return cachedImage({
    dir: 'debian-python',
    recipe,
    tag: DEBIAN_PYTHON_TAG,
    description: `Debian bookworm minbase (mmdebstrap, from ${APT_SOURCES}), python3 (a second mmdebstrap --include=python3, diffed by umoci), and an app layer (whiteouts of /usr/share/doc/*, /app owned by 1000, a hard link, a symlink), as a docker-archive from skopeo`,
    build: async ({ rootfs, repack }) => {
      const minbase = await debianRootfsTar([], log);
      const python = await debianRootfsTar(['python3'], log);
      await replaceTree(rootfs, minbase);
      log('debian-python: umoci repack layer 1 (minbase)');
      await repack('l1', 'mmdebstrap --variant=minbase bookworm');
      await replaceTree(rootfs, python);
      log('debian-python: umoci repack layer 2 (python3)');
      await repack('l2', 'mmdebstrap --variant=minbase --include=python3 bookworm');
      const facts = await appLayer(rootfs);
      log('debian-python: umoci repack layer 3 (the app, /usr/share/doc deleted)');
      await repack('l3', 'thinsim test app');
      return { tag: 'l3', facts };
    },
  });
}
