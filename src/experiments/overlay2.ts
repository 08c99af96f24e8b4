/**
 * An overlay2 store laid out as Docker's overlay2 graph driver lays out
 * /var/lib/docker/overlay2, for driver-compare: the other side of the comparison.
 *
 * Contract:
 * - Every layer is a directory `<id>/` (64 random hex digits, like a cache-id) holding
 *   `diff/` (the layer's own files), `link` (its 26-character short name) and, above the
 *   bottom layer, `lower` (the short links of every layer below, nearest first, as
 *   "l/A:l/B") and `work/`; `l/<short>` is a symlink to `../<id>/diff`. Containers get
 *   `<id>-init` (Docker's init files, made through an overlay mount of it, as Docker's
 *   initlayer.Setup runs on the mounted init layer) and `<id>`, mounted at `<id>/merged`.
 * - Layers are applied with src/layers/apply.ts in its overlay whiteout mode: a deleted
 *   file is a character device 0/0, an opaque directory has trusted.overlay.opaque=y.
 *   Each DiffID is checked against the image config as the devicemapper import does.
 * - Mounts are the kernel's: `mount -t overlay overlay -o lowerdir=..,upperdir=..,workdir=..`.
 *   `close()` unmounts whatever is still mounted. Every program runs asynchronously.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Tree } from '../layers/tree';
import { runTool, runToolOk } from '../tools';
import { checkDiffId, openImageArchive } from '../layers/image-archive';

interface O2Layer { id: string; link: string; lower: string[] }

const LINK_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const shortLink = () => [...randomBytes(26)].map((b) => LINK_CHARS[b % LINK_CHARS.length]).join('');

/** Why overlay mounts cannot be made here, or undefined when they can. */
export function overlayUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'overlay mounts, whiteout device nodes and trusted.* xattrs need root';
  let fss = '';
  try { fss = fs.readFileSync('/proc/filesystems', 'utf8'); } catch { /* below */ }
  if (!/\toverlay$/m.test(fss)) return 'the kernel has no overlay filesystem (/proc/filesystems; modprobe overlay)';
  return undefined;
}

export class Overlay2Store {
  private readonly layers = new Map<string, O2Layer>();
  private readonly mounted = new Set<string>();
  /** The image's top layer id. */
  top?: string;

  constructor(readonly root: string) {
    fs.mkdirSync(path.join(root, 'l'), { recursive: true, mode: 0o700 });
  }

  private dir(id: string, ...p: string[]): string { return path.join(this.root, id, ...p); }

  /** Docker's overlay2 Create: dir, diff/, link, l/<link>; above a parent also work/ and lower. */
  async create(parent: string | undefined, id = randomBytes(32).toString('hex')): Promise<O2Layer> {
    const link = shortLink();
    await fsp.mkdir(this.dir(id, 'diff'), { recursive: true, mode: 0o755 });
    await fsp.symlink(path.join('..', id, 'diff'), path.join(this.root, 'l', link));
    await fsp.writeFile(this.dir(id, 'link'), link);
    let lower: string[] = [];
    if (parent) {
      const p = this.layers.get(parent)!;
      lower = [p.link, ...p.lower];
      await fsp.mkdir(this.dir(id, 'work'), { mode: 0o700 });
      await fsp.writeFile(this.dir(id, 'lower'), lower.map((l) => `l/${l}`).join(':'));
    }
    const l = { id, link, lower };
    this.layers.set(id, l);
    return l;
  }

  /** Apply every layer of the (first) image in `archive`, each into its own diff/. */
  async importImage(archive: string): Promise<{ layers: number; whiteouts: number; opaqueDirs: number }> {
    const a = await openImageArchive(archive);
    const img = a.images[0];
    let parent: string | undefined;
    let whiteouts = 0;
    let opaqueDirs = 0;
    for (const [i, l] of img.layers.entries()) {
      const layer = await this.create(parent);
      const r = await new Tree(this.dir(layer.id, 'diff')).apply(l.source, { expectBlobDigest: l.digest, whiteouts: 'overlay' });
      checkDiffId(img, i, r.diffId);
      whiteouts += r.whiteouts;
      opaqueDirs += r.opaqueDirs;
      parent = layer.id;
    }
    this.top = parent;
    return { layers: img.layers.length, whiteouts, opaqueDirs };
  }

  /** Mount layer `id` read-write at `<id>/merged` with the kernel's overlay filesystem. */
  async mount(id: string): Promise<string> {
    const l = this.layers.get(id)!;
    const merged = this.dir(id, 'merged');
    await fsp.mkdir(merged, { recursive: true, mode: 0o700 });
    const lowerdir = l.lower.map((x) => path.join(this.root, 'l', x)).join(':');
    await runToolOk('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowerdir},upperdir=${this.dir(id, 'diff')},workdir=${this.dir(id, 'work')}`, merged], `overlay mount of ${id}`);
    this.mounted.add(merged);
    return merged;
  }

  async unmount(id: string): Promise<void> {
    const merged = this.dir(id, 'merged');
    if (!this.mounted.has(merged)) return;
    const r = await runTool('umount', [merged]);
    if (r.status !== 0) await runTool('umount', ['-l', merged]);
    this.mounted.delete(merged);
    await fsp.rmdir(merged).catch(() => undefined);
  }

  /** Docker's container layers: `<id>-init` with the init files, then `<id>` on it. */
  async createContainer(): Promise<{ id: string; initFiles: string[] }> {
    const id = randomBytes(32).toString('hex');
    const init = await this.create(this.top, `${id}-init`);
    await this.mount(init.id);
    let initFiles: string[];
    try { initFiles = await new Tree(this.dir(init.id, 'merged')).init(); } finally { await this.unmount(init.id); }
    await this.create(init.id, id);
    return { id, initFiles };
  }

  /** The host path holding `rel` as container `id` sees it (its own diff, else the nearest lower). */
  async realPath(id: string, rel: string): Promise<string | undefined> {
    const l = this.layers.get(id)!;
    for (const d of [this.dir(id, 'diff'), ...l.lower.map((x) => path.join(this.root, 'l', x))]) {
      const p = path.join(d, rel);
      if (await fsp.lstat(p).then(() => true, () => false)) return p;
    }
    return undefined;
  }

  async close(): Promise<void> {
    for (const m of [...this.mounted]) {
      const r = await runTool('umount', [m]);
      if (r.status !== 0) await runTool('umount', ['-l', m]);
      this.mounted.delete(m);
    }
  }
}
