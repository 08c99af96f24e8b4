/**
 * Test images built by real tools: umoci makes OCI layouts from generated directory trees
 * (new, unpack, edit, repack; raw add-layer for a GNU tar layer with an opaque directory),
 * skopeo converts them to docker-archive, and `umoci unpack` gives the oracle tree each
 * import must reproduce. Nothing here writes tar or whiteouts itself.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

export const isRoot = process.getuid?.() === 0;

/** Why image tests must skip here, or undefined when umoci, skopeo and root are all present. */
export function missingTools(): string | undefined {
  const gone = ['umoci', 'skopeo', 'tar'].filter((t) => !have(t));
  if (gone.length) return `needs ${gone.join(', ')} (apt-get install umoci skopeo)`;
  if (!isRoot) return 'needs root (umoci repack records owners; device nodes)';
  return undefined;
}

const run = (cmd: string, args: string[], cwd?: string) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();

function write(root: string, rel: string, content: string | Buffer, mode = 0o644): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  fs.chmodSync(p, mode);
}

export interface Fixture {
  work: string;
  /** The OCI layout (directory) holding tags base, app, other. */
  layout: string;
  /** Oracle trees: `umoci unpack` of each tag. */
  rootfs: Record<'base' | 'app' | 'other', string>;
  /** docker-archive tarballs written by skopeo from the layout. */
  dockerArchive: Record<'app' | 'other', string>;
  /** The OCI layout packed as a tar (GNU tar of the directory). */
  layoutTar: string;
}

/**
 * base: two layers of generated files (text, binary, setuid, owned by 1000:1000, symlinks,
 * hard links, a fifo, a device node). app = base + a layer that modifies and deletes
 * (umoci's whiteouts) + a GNU tar layer with an opaque directory. other = base + one
 * layer of its own (shares base's layers).
 */
export function buildFixture(work: string): Fixture {
  const layout = path.join(work, 'oci');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:base`]);
  const b = path.join(work, 'b-base');
  run('umoci', ['unpack', '--image', `${layout}:base`, b]);
  let r = path.join(b, 'rootfs');
  write(r, 'etc/os-release', 'NAME=thinsim-test\n');
  write(r, 'etc/motd', 'hello\n');
  write(r, 'bin/tool', createHash('sha256').update('tool').digest(), 0o4755);
  write(r, 'opt/app/config', 'old config\n');
  write(r, 'opt/app/data/one', 'one\n');
  write(r, 'opt/app/data/two', 'two\n');
  write(r, 'var/lib/state', Buffer.alloc(300_000, 7));
  fs.symlinkSync('/etc/os-release', path.join(r, 'etc/abs-link'));
  fs.symlinkSync('../etc/motd', path.join(r, 'bin/rel-link'));
  fs.linkSync(path.join(r, 'etc/motd'), path.join(r, 'etc/motd.hard'));
  fs.chownSync(path.join(r, 'opt/app/data/two'), 1000, 1000);
  run('mkfifo', [path.join(r, 'var/fifo')]);
  run('mknod', [path.join(r, 'var/null'), 'c', '1', '3']);
  run('umoci', ['repack', '--image', `${layout}:base`, b]);
  // a second base layer, so base has a chain of two
  fs.rmSync(b, { recursive: true });
  run('umoci', ['unpack', '--image', `${layout}:base`, b]);
  write(r, 'usr/share/doc/readme', 'readme\n'.repeat(1000));
  fs.mkdirSync(path.join(r, 'tmp'), { mode: 0o1777 });
  fs.chmodSync(path.join(r, 'tmp'), 0o1777);
  run('umoci', ['repack', '--image', `${layout}:base`, b]);

  // app: modify, delete, replace a directory (umoci writes per-file whiteouts)
  const a = path.join(work, 'b-app');
  run('umoci', ['unpack', '--image', `${layout}:base`, a]);
  r = path.join(a, 'rootfs');
  write(r, 'opt/app/config', 'new config\n');
  fs.rmSync(path.join(r, 'etc/motd.hard'));
  fs.rmSync(path.join(r, 'opt/app/data/one'));
  fs.rmSync(path.join(r, 'usr/share/doc'), { recursive: true });
  write(r, 'etc/new-file', 'added by app\n', 0o600);
  run('umoci', ['repack', '--image', `${layout}:app`, a]); // the tag --image names is the one written
  // a layer GNU tar writes, with an opaque directory and a whiteout, added verbatim
  const l = path.join(work, 'opaque-layer');
  write(l, 'opt/app/.wh..wh..opq', '');
  write(l, 'opt/app/fresh', 'only this is left in /opt/app\n');
  write(l, 'var/.wh.fifo', '');
  const lt = path.join(work, 'opaque-layer.tar');
  run('tar', ['-C', l, '-cf', lt, '.']);
  run('umoci', ['raw', 'add-layer', '--image', `${layout}:app`, lt]);

  const o = path.join(work, 'b-other');
  run('umoci', ['unpack', '--image', `${layout}:base`, o]);
  write(path.join(o, 'rootfs'), 'srv/other', 'the other image\n');
  run('umoci', ['repack', '--image', `${layout}:other`, o]);

  const rootfs = { base: path.join(work, 'u-base'), app: path.join(work, 'u-app'), other: path.join(work, 'u-other') };
  for (const t of ['base', 'app', 'other'] as const) run('umoci', ['unpack', '--image', `${layout}:${t}`, rootfs[t]]);
  for (const t of Object.keys(rootfs) as Array<keyof typeof rootfs>) rootfs[t] = path.join(rootfs[t], 'rootfs');
  const dockerArchive = { app: path.join(work, 'app.docker.tar'), other: path.join(work, 'other.docker.tar') };
  for (const t of ['app', 'other'] as const) {
    run('skopeo', ['copy', '--quiet', `oci:${layout}:${t}`, `docker-archive:${dockerArchive[t]}:thinsim/${t}:latest`]);
  }
  const layoutTar = path.join(work, 'oci-layout.tar');
  run('tar', ['-C', layout, '-cf', layoutTar, '.']);
  return { work, layout, rootfs, dockerArchive, layoutTar };
}

/** What `umoci stat --json` reports: one diff_id per layer, in order. */
export function umociDiffIds(layout: string, tag: string): string[] {
  const s = JSON.parse(run('umoci', ['stat', '--json', '--image', `${layout}:${tag}`])) as { history: Array<{ diff_id?: string; layer?: unknown }> };
  return s.history.filter((h) => h.layer).map((h) => h.diff_id!);
}

/** What `skopeo inspect` reports for an archive: the config's diff_ids and the image ID. */
export function skopeoConfig(ref: string): { diffIds: string[]; configDigest: string } {
  const cfg = JSON.parse(run('skopeo', ['inspect', '--config', '--raw', ref])) as { rootfs: { diff_ids: string[] } };
  const raw = execFileSync('skopeo', ['inspect', '--config', '--raw', ref]);
  return { diffIds: cfg.rootfs.diff_ids, configDigest: 'sha256:' + createHash('sha256').update(raw).digest('hex') };
}

export interface Node { type: string; mode: number; uid: number; gid: number; mtime: number; content?: string; link?: string; rdev?: number }

/**
 * Every entry under `root` (lost+found aside), keyed by its relative path. Asynchronous
 * fs calls only: a mounted layer is served by an NBD server in this very process.
 */
export async function walkTree(root: string, skip: (rel: string) => boolean = (r) => r === 'lost+found'): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const visit = async (rel: string) => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip(r)) continue;
      const p = path.join(root, r);
      const st = await fsp.lstat(p);
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chr' : st.isBlockDevice() ? 'blk' : 'other';
      const n: Node = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
      if (type === 'file') n.content = createHash('sha256').update(await fsp.readFile(p)).digest('hex');
      if (type === 'symlink') { n.link = await fsp.readlink(p); n.mode = 0; }
      if (type === 'chr' || type === 'blk') n.rdev = st.rdev;
      out.set(r, n);
      if (type === 'dir') await visit(r);
    }
  };
  await visit('');
  return out;
}

/** Differences between two trees, as readable lines (empty: equal). Directory mtimes are not compared (the kernel moves them). */
export function compareTrees(want: Map<string, Node>, got: Map<string, Node>): string[] {
  const out: string[] = [];
  for (const [k, w] of want) {
    const g = got.get(k);
    if (!g) { out.push(`missing ${k}`); continue; }
    const a = { ...w, mtime: w.type === 'dir' ? 0 : w.mtime };
    const b = { ...g, mtime: g.type === 'dir' ? 0 : g.mtime };
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${k}: want ${JSON.stringify(a)} got ${JSON.stringify(b)}`);
  }
  for (const k of got.keys()) if (!want.has(k)) out.push(`unexpected ${k}`);
  return out;
}

/** Why layers cannot be mounted here (NBD through nbdfuse, then ext4), or undefined. */
export function missingMount(): string | undefined {
  const gone = ['nbdfuse', 'mkfs.ext4'].filter((t) => !have(t) && !fs.existsSync(`/usr/sbin/${t}`) && !fs.existsSync(`/sbin/${t}`));
  if (gone.length) return `needs ${gone.join(', ')} to mount layers (apt-get install nbdfuse e2fsprogs)`;
  if (!fs.existsSync('/dev/fuse')) return 'needs /dev/fuse to mount layers through nbdfuse';
  if (!isRoot && !have('fuse2fs')) return 'needs root (loop mounts) or fuse2fs to mount ext4 layers';
  return undefined;
}
