/**
 * The images driver-compare stores both ways.
 *
 * - Full runs: a real Debian root filesystem (`mmdebstrap --variant=minbase bookworm`
 *   from this machine's own apt sources) as layer 1, and two layers above it made with
 *   umoci (unpack, edit the tree, `repack --refresh-bundle`): layer 2 adds /opt/app (the
 *   big file containers write into, 50 small config files), modifies /etc/motd and
 *   /etc/issue and deletes /etc/issue.net and 20 /usr/share/doc entries; layer 3 adds a
 *   2 MiB library and /etc/app.conf, rewrites 10 config files, appends to /etc/passwd and
 *   deletes 10 config files. `skopeo copy oci:.. docker-archive:..` makes the docker-save
 *   archive both stores import. The archive is cached under
 *   ~/.cache/thinsim/driver-compare/<recipe hash>/image.tar (the recipe: suite, variant,
 *   apt sources, big file size, this file's recipe version), the mmdebstrap tarball
 *   beside it as rootfs-<hash of suite, variant, sources>.tar.
 * - --quick: the same three-layer shape generated in Node (image-gen.ts), with a toy base
 *   layer instead of Debian, so a run takes seconds.
 *
 * The machinery is shared with the other real-image recipes (debian-python-image.ts):
 * debianRootfsTar (cached mmdebstrap tarballs, optionally with --include) and
 * cachedImage (umoci bundle, one repack per layer, skopeo to docker-archive, cached by a
 * hash of the recipe).
 *
 * Contract: both images hold BIG_FILE (the size asked for) and every path of FEW_FILES;
 * every deletion is a real whiteout in the layer tar.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runToolOk } from '../tools';
import { seededContent, writeDockerArchive, type GenEntry } from './image-gen';

export const BIG_FILE = 'opt/app/data/big.bin';
/** What each container modifies (appends 64 bytes to). */
export const FEW_FILES = ['etc/motd', 'opt/app/conf/c20.conf', 'opt/app/lib/libmed.so'];
export const MED_SIZE = 2 * 2 ** 20;
const RECIPE_VERSION = 1;
export const APT_SOURCES = '/etc/apt/sources.list.d/debian.sources';

export interface BuiltImage { file: string; tag: string; kind: 'debian' | 'generated'; cached: boolean; buildSeconds: number; description: string; cacheDir?: string }

const conf = (i: number, v: number) => `# app config ${i}, version ${v}\n` + `key${i}=value${v}\n`.repeat(30);
const name2 = (i: number) => `opt/app/conf/c${String(i).padStart(2, '0')}.conf`;

/** The quick image: a toy base, then the same layer 2 and 3 as the Debian recipe. */
export async function generatedImage(dir: string, bigSize: number): Promise<BuiltImage> {
  const t0 = performance.now();
  const base: GenEntry[] = [
    { path: 'etc', type: 'dir' }, { path: 'etc/motd', type: 'file', content: 'base motd\n' },
    { path: 'etc/issue', type: 'file', content: 'toy base\n' }, { path: 'etc/issue.net', type: 'file', content: 'toy base\n' },
    { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { path: 'usr', type: 'dir' }, { path: 'usr/bin', type: 'dir' }, { path: 'usr/bin/sh', type: 'file', content: { size: 1 << 20, seed: 1 }, mode: 0o755 },
    { path: 'usr/share', type: 'dir' }, { path: 'usr/share/doc', type: 'dir' },
  ];
  for (let i = 0; i < 30; i++) base.push({ path: `usr/share/doc/pkg${i}`, type: 'dir' }, { path: `usr/share/doc/pkg${i}/copyright`, type: 'file', content: `package ${i}\n`.repeat(40) });
  const l2: GenEntry[] = [
    { path: 'opt', type: 'dir' }, { path: 'opt/app', type: 'dir' }, { path: 'opt/app/data', type: 'dir' }, { path: 'opt/app/conf', type: 'dir' },
    { path: BIG_FILE, type: 'file', content: { size: bigSize, seed: 11 } },
    ...Array.from({ length: 50 }, (_, i): GenEntry => ({ path: name2(i), type: 'file', content: conf(i, 1) })),
    { path: 'etc/motd', type: 'file', content: 'motd of layer 2\n' }, { path: 'etc/issue', type: 'file', content: 'toy base, layer 2\n' },
    { path: 'etc/issue.net', type: 'whiteout' },
    ...Array.from({ length: 20 }, (_, i): GenEntry => ({ path: `usr/share/doc/pkg${i}`, type: 'whiteout' })),
  ];
  const l3: GenEntry[] = [
    { path: 'opt/app/lib', type: 'dir' }, { path: 'opt/app/lib/libmed.so', type: 'file', content: { size: MED_SIZE, seed: 12 } },
    { path: 'etc/app.conf', type: 'file', content: 'mode=production\n' },
    { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/opt/app:/bin/sh\n' },
    ...Array.from({ length: 10 }, (_, i): GenEntry => ({ path: name2(i), type: 'file', content: conf(i, 2) })),
    ...Array.from({ length: 10 }, (_, i): GenEntry => ({ path: name2(40 + i), type: 'whiteout' })),
    // The part of /usr/share/doc layer 2 kept goes too, replaced: an opaque directory.
    { path: 'usr/share/doc', type: 'opaque' }, { path: 'usr/share/doc/README', type: 'file', content: 'docs trimmed\n' },
  ];
  const file = path.join(dir, 'quick-image.tar');
  const tag = 'thinsim/driver-compare:quick';
  await writeDockerArchive(file, { repoTag: tag, layers: [base, l2, l3] });
  return { file, tag, kind: 'generated', cached: false, buildSeconds: (performance.now() - t0) / 1000,
    description: `generated (image-gen.ts, --quick): a toy base layer of ${base.length} entries and the Debian recipe's layers 2 and 3 (adds, modifies, 31 whiteouts and an opaque /usr/share/doc); big file ${bigSize / 2 ** 20} MiB` };
}

export function debianRecipe(bigSize: number): Record<string, unknown> {
  let sources = '';
  try { sources = fs.readFileSync(APT_SOURCES, 'utf8'); } catch { /* recorded as empty */ }
  return { version: RECIPE_VERSION, tool: 'mmdebstrap', suite: 'bookworm', variant: 'minbase', sources, bigFile: BIG_FILE, bigSize, medSize: MED_SIZE };
}

async function writeSeeded(p: string, size: number, seed: number): Promise<void> {
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await pipeline(seededContent(size, seed), fs.createWriteStream(p));
}

const CACHE_ROOT = path.join(os.homedir(), '.cache', 'thinsim');
/** Where the mmdebstrap tarballs are kept (driver-compare kept them here first; the path stays so that cache stays valid). */
const ROOTFS_DIR = path.join(CACHE_ROOT, 'driver-compare');
const sha16 = (x: unknown) => createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);

/**
 * A bookworm root filesystem tarball from `mmdebstrap --variant=minbase` (plus `include`d
 * packages) and this machine's apt sources, cached as rootfs-<hash of suite, variant,
 * sources, includes>.tar; built once, then shared by every image recipe that starts from it.
 */
export async function debianRootfsTar(include: readonly string[], log: (l: string) => void): Promise<string> {
  const recipe = debianRecipe(0);
  const key = sha16({ suite: recipe.suite, variant: recipe.variant, sources: recipe.sources, ...(include.length ? { include } : {}) });
  const file = path.join(ROOTFS_DIR, `rootfs-${key}.tar`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(ROOTFS_DIR, { recursive: true });
  const partial = `${file}.build-${process.pid}`;
  log(`image: building a Debian root filesystem (mmdebstrap --variant=minbase bookworm${include.length ? ` --include=${include.join(',')}` : ''}), cached afterwards`);
  try {
    await runToolOk('mmdebstrap', ['--quiet', '--variant=minbase', ...(include.length ? [`--include=${include.join(',')}`] : []), 'bookworm', partial, APT_SOURCES], 'mmdebstrap', 1_200_000);
    fs.renameSync(partial, file);
  } finally {
    fs.rmSync(partial, { force: true });
  }
  return file;
}

/** An OCI layout with one bundle whose rootfs is edited, then repacked layer by layer (umoci computes each diff). */
export interface OciBuild {
  oci: string;
  rootfs: string;
  /** `umoci repack` the bundle as tag `tag` (the next layer, on top of the previous tag). */
  repack(tag: string, createdBy: string): Promise<void>;
}

/** What a recipe's build step returns: the OCI tag to export, and facts for build.json. */
export interface RecipeResult { tag: string; facts?: Record<string, unknown> }

/**
 * Build (or take from the cache) a docker-archive image: `build` fills an empty umoci bundle
 * and repacks it once per layer; skopeo copies the last tag to docker-archive. Cached under
 * ~/.cache/thinsim/<dir>/<hash of recipe>/image.tar with recipe.json and build.json beside it.
 */
export async function cachedImage(spec: { dir: string; recipe: Record<string, unknown>; tag: string; description: string; build: (b: OciBuild) => Promise<RecipeResult> }): Promise<BuiltImage> {
  const cacheDir = path.join(CACHE_ROOT, spec.dir, sha16(spec.recipe));
  const file = path.join(cacheDir, 'image.tar');
  const { tag, description } = spec;
  if (fs.existsSync(file)) {
    const meta = JSON.parse(fs.readFileSync(path.join(cacheDir, 'build.json'), 'utf8')) as { buildSeconds: number };
    return { file, tag, kind: 'debian', cached: true, buildSeconds: meta.buildSeconds, description, cacheDir };
  }
  const t0 = performance.now();
  fs.mkdirSync(path.dirname(cacheDir), { recursive: true });
  const tmp = fs.mkdtempSync(`${cacheDir}.build-`);
  try {
    const oci = path.join(tmp, 'oci');
    const bundle = path.join(tmp, 'bundle');
    await runToolOk('umoci', ['init', '--layout', oci], 'umoci init');
    await runToolOk('umoci', ['new', '--image', `${oci}:empty`], 'umoci new');
    await runToolOk('umoci', ['unpack', '--image', `${oci}:empty`, bundle], 'umoci unpack');
    const repack = async (t: string, createdBy: string) => {
      await runToolOk('umoci', ['repack', '--refresh-bundle', '--history.created_by', createdBy, '--image', `${oci}:${t}`, bundle], `umoci repack ${t}`, 1_200_000);
    };
    const r = await spec.build({ oci, rootfs: path.join(bundle, 'rootfs'), repack });
    const out = path.join(tmp, 'image.tar');
    await runToolOk('skopeo', ['copy', '--quiet', `oci:${oci}:${r.tag}`, `docker-archive:${out}:${tag}`], 'skopeo copy', 1_200_000);
    const buildSeconds = (performance.now() - t0) / 1000;
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.writeFileSync(path.join(cacheDir, 'recipe.json'), JSON.stringify(spec.recipe, null, 2));
    fs.writeFileSync(path.join(cacheDir, 'build.json'), JSON.stringify({ buildSeconds, built: new Date().toISOString(), ...r.facts }));
    fs.renameSync(out, file);
    return { file, tag, kind: 'debian', cached: false, buildSeconds, description, cacheDir };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Build (or take from the cache) the Debian image; `log` gets one line per step. */
export async function debianImage(bigSize: number, log: (l: string) => void): Promise<BuiltImage> {
  return cachedImage({
    dir: 'driver-compare',
    recipe: debianRecipe(bigSize),
    tag: 'thinsim/debian-minbase:driver-compare',
    description: `Debian bookworm minbase (mmdebstrap, from ${APT_SOURCES}) and two umoci layers (adds /opt/app with a ${bigSize / 2 ** 20} MiB big file, modifies, whiteouts), as a docker-archive from skopeo`,
    build: async ({ rootfs, repack }) => {
      const rootfsTar = await debianRootfsTar([], log);
      await runToolOk('tar', ['-xpf', rootfsTar, '--numeric-owner', '-C', rootfs], 'tar -x the rootfs');
      log('driver-compare: umoci repack layer 1 (the root filesystem)');
      await repack('l1', 'mmdebstrap --variant=minbase bookworm');
      // Layer 2: add /opt/app, modify two files, delete /etc/issue.net and 20 doc entries.
      await writeSeeded(path.join(rootfs, BIG_FILE), bigSize, 11);
      await fsp.mkdir(path.join(rootfs, 'opt/app/conf'), { recursive: true });
      for (let i = 0; i < 50; i++) await fsp.writeFile(path.join(rootfs, name2(i)), conf(i, 1));
      await fsp.writeFile(path.join(rootfs, 'etc/motd'), 'motd of layer 2\n');
      await fsp.appendFile(path.join(rootfs, 'etc/issue'), 'thinsim driver-compare, layer 2\n');
      await fsp.rm(path.join(rootfs, 'etc/issue.net'), { force: true });
      const docs = (await fsp.readdir(path.join(rootfs, 'usr/share/doc'))).sort().slice(0, 20);
      for (const d of docs) await fsp.rm(path.join(rootfs, 'usr/share/doc', d), { recursive: true, force: true });
      log('driver-compare: umoci repack layer 2 (adds, modifies, deletes)');
      await repack('l2', 'thinsim driver-compare layer 2');
      // Layer 3: add a library and a config, rewrite 10 configs, append to /etc/passwd, delete 10 configs.
      await writeSeeded(path.join(rootfs, 'opt/app/lib/libmed.so'), MED_SIZE, 12);
      await fsp.writeFile(path.join(rootfs, 'etc/app.conf'), 'mode=production\n');
      await fsp.appendFile(path.join(rootfs, 'etc/passwd'), 'app:x:1000:1000::/opt/app:/bin/sh\n');
      for (let i = 0; i < 10; i++) await fsp.writeFile(path.join(rootfs, name2(i)), conf(i, 2));
      for (let i = 40; i < 50; i++) await fsp.rm(path.join(rootfs, name2(i)));
      log('driver-compare: umoci repack layer 3 (adds, modifies, deletes)');
      await repack('l3', 'thinsim driver-compare layer 3');
      return { tag: 'l3', facts: { docEntriesDeleted: docs } };
    },
  });
}
