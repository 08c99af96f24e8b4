/**
 * Docker's image and container records beside a layer store, in Docker's layout under the
 * store's Docker root (POOL/docker, the counterpart of /var/lib/docker):
 *
 *   image/devicemapper/imagedb/content/sha256/<image id>   the config JSON, byte for byte
 *   image/devicemapper/repositories.json                   {"Repositories": {repo: {"repo:tag": id}}}
 *   image/devicemapper/layerdb/mounts/<container id>/{mount-id,init-id,parent}
 *   containers/<container id>/config.v2.json               ID, Name ("/name"), Image, Driver, Created
 *
 * Contract: pure file records, no devices. Every write is atomic (records.ts writeAtomic);
 * readers tolerate a missing file as "none yet". The image ID is the sha256 of the config
 * bytes, so content files are checked against their names when read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crashPoint } from '../crash-points';
import { ThinError, ioError } from '../errors';
import { sha256 } from './image-archive';
import { writeDirAtomic } from '../durable';
import { dockerPaths, readJson, removeDurable, writeAtomic } from './records';

export interface ImageConfig { rootfs: { type: string; diff_ids: string[] }; created?: string; [k: string]: unknown }

export interface ImageRecord { id: string; config: ImageConfig; tags: string[] }

export interface MountRecord { containerId: string; mountId: string; initId: string; parent: string; name?: string; image?: string; created?: string }

type Repositories = { Repositories: Record<string, Record<string, string>> };

const HEX64 = /^[0-9a-f]{64}$/;

export class ImageRecords {
  readonly root: string;
  readonly imageDir: string;
  constructor(readonly poolDir: string) {
    this.root = dockerPaths(poolDir).root;
    this.imageDir = path.join(this.root, 'image', 'devicemapper');
  }

  private get contentDir(): string { return path.join(this.imageDir, 'imagedb', 'content', 'sha256'); }
  private get reposFile(): string { return path.join(this.imageDir, 'repositories.json'); }
  private get mountsDir(): string { return path.join(this.imageDir, 'layerdb', 'mounts'); }
  private get containersDir(): string { return path.join(this.root, 'containers'); }

  /** A container's layerdb/mounts record, relative to the records root (the commit point of its creation and removal). */
  mountRecordPath(containerId: string): string {
    return path.relative(this.root, path.join(this.mountsDir, containerId));
  }

  // ---- images

  writeImage(id: string, configBytes: Buffer): void {
    fs.mkdirSync(this.contentDir, { recursive: true, mode: 0o700 });
    writeAtomic(path.join(this.contentDir, id.replace(/^sha256:/, '')), configBytes.toString('utf8'));
  }

  removeImage(id: string): void {
    removeDurable(path.join(this.contentDir, id.replace(/^sha256:/, '')));
  }

  images(): ImageRecord[] {
    let names: string[];
    try { names = fs.readdirSync(this.contentDir).filter((n) => HEX64.test(n)); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError('list', this.contentDir, e);
    }
    const tags = this.tagsById();
    return names.map((hex) => {
      const file = path.join(this.contentDir, hex);
      const bytes = fs.readFileSync(file);
      if (sha256(bytes) !== `sha256:${hex}`) throw new ThinError('E_CORRUPT', `${file} does not hash to its name: the image record is damaged`, { file });
      return { id: `sha256:${hex}`, config: readJson(file) as unknown as ImageConfig, tags: tags.get(`sha256:${hex}`) ?? [] };
    });
  }

  // ---- tags

  private readRepos(): Repositories {
    const r = readJson(this.reposFile);
    if (r === undefined) return { Repositories: {} };
    if (!r.Repositories || typeof r.Repositories !== 'object') throw new ThinError('E_PARSE', `${this.reposFile} has no "Repositories" object; it is damaged`, { file: this.reposFile });
    return r as unknown as Repositories;
  }

  private writeRepos(r: Repositories): void {
    fs.mkdirSync(this.imageDir, { recursive: true, mode: 0o700 });
    writeAtomic(this.reposFile, JSON.stringify(r));
  }

  /** Point `tag` (repo:tag) at image `id`, moving it off any image it named before. */
  tag(tag: string, id: string): void {
    const r = this.readRepos();
    const repo = repoOf(tag);
    (r.Repositories[repo] ??= {})[tag] = id;
    this.writeRepos(r);
  }

  untag(tag: string): void {
    const r = this.readRepos();
    const repo = repoOf(tag);
    if (!r.Repositories[repo]) return;
    delete r.Repositories[repo][tag];
    if (Object.keys(r.Repositories[repo]).length === 0) delete r.Repositories[repo];
    this.writeRepos(r);
  }

  tagsById(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const tags of Object.values(this.readRepos().Repositories)) {
      for (const [t, id] of Object.entries(tags)) out.set(id, [...(out.get(id) ?? []), t].sort());
    }
    return out;
  }

  /** The image a reference names: repo:tag (":latest" when no tag), a full ID, or a unique ID prefix. */
  resolve(ref: string): ImageRecord {
    const all = this.images();
    const tag = normalizeTag(ref);
    const byTag = all.find((i) => i.tags.includes(tag));
    if (byTag) return byTag;
    const hex = ref.replace(/^sha256:/, '');
    if (/^[0-9a-f]{1,64}$/.test(hex)) {
      const hits = all.filter((i) => i.id.slice(7).startsWith(hex));
      if (hits.length === 1) return hits[0];
      if (hits.length > 1) throw new ThinError('E_INVALID', `"${ref}" is ambiguous: it starts ${hits.length} image IDs; give more digits`, { image: ref });
    }
    throw new ThinError('E_NOT_FOUND', `no image "${ref}" in ${this.poolDir}; see thinsim image ls`, { image: ref });
  }

  // ---- containers (layerdb/mounts and containers/<id>/config.v2.json)

  /**
   * A container's records: its config first, then its layerdb/mounts directory, made
   * whole beside its name and renamed into place (the commit point: mounts() lists only
   * whole directories under their container id).
   */
  writeMount(m: MountRecord): void {
    const cdir = path.join(this.containersDir, m.containerId);
    fs.mkdirSync(cdir, { recursive: true, mode: 0o700 });
    writeAtomic(path.join(cdir, 'config.v2.json'), JSON.stringify({ ID: m.containerId, Created: m.created, Name: `/${m.name}`, Image: m.image, Driver: 'devicemapper' }));
    fs.mkdirSync(this.mountsDir, { recursive: true, mode: 0o700 });
    writeDirAtomic(path.join(this.mountsDir, m.containerId), (tmp) => {
      writeAtomic(path.join(tmp, 'mount-id'), m.mountId);
      crashPoint('image:mount:1');
      writeAtomic(path.join(tmp, 'init-id'), m.initId);
      writeAtomic(path.join(tmp, 'parent'), m.parent);
    });
  }

  /** The layerdb/mounts record: gone at once (renamed aside, durable). */
  removeMount(containerId: string): void {
    removeDurable(path.join(this.mountsDir, containerId));
  }

  /** containers/<id>, the container's config (after its mount record and layers are gone). */
  removeContainerConfig(containerId: string): void {
    removeDurable(path.join(this.containersDir, containerId));
  }

  mounts(): MountRecord[] {
    let ids: string[];
    try { ids = fs.readdirSync(this.mountsDir).filter((n) => HEX64.test(n)); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError('list', this.mountsDir, e);
    }
    return ids.map((containerId) => {
      const dir = path.join(this.mountsDir, containerId);
      const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8').trim();
      // A mount without a container config is Docker's own leftover (absent: no name); a damaged one is E_PARSE.
      const cfg = (readJson(path.join(this.containersDir, containerId, 'config.v2.json')) ?? {}) as { Name?: string; Image?: string; Created?: string };
      return { containerId, mountId: read('mount-id'), initId: read('init-id'), parent: read('parent'), name: cfg.Name?.replace(/^\//, ''), image: cfg.Image, created: cfg.Created };
    });
  }
}

/** "busybox" -> "busybox:latest"; "reg:5000/a/b" -> "reg:5000/a/b:latest"; digests stay. */
export function normalizeTag(ref: string): string {
  if (ref.includes('@')) return ref;
  const slash = ref.lastIndexOf('/');
  return ref.slice(slash + 1).includes(':') ? ref : `${ref}:latest`;
}

function repoOf(tag: string): string {
  const at = tag.indexOf('@');
  if (at >= 0) return tag.slice(0, at);
  const colon = tag.lastIndexOf(':');
  return colon > tag.lastIndexOf('/') ? tag.slice(0, colon) : tag;
}
