/**
 * Read an image archive without unpacking it: a `docker save` tarball (manifest.json,
 * the config JSON, one tar per layer) or an OCI image layout (oci-layout, index.json,
 * blobs/sha256/...), each either as a tar file or as a directory.
 *
 * Contract: opening an archive reads only its small JSON members; a tar archive is indexed
 * by walking its 512-byte headers (tar-stream's header codec) and seeking over member
 * bodies, so a layer is handed out as a byte range of the archive file (a LayerSource) and
 * read once, by whoever applies it. Members must be stored uncompressed in the outer tar
 * (as docker save and skopeo write them). Every error names the archive and the member.
 * The index holds names and offsets only; a PAX or GNU long-name header is read whole only
 * up to MAX_TAR_META (tar-guard.ts), and every size must be a byte count (E_PARSE).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as headers from 'tar-stream/headers';
import { ThinError, ioError } from '../errors';
import { applyLayer, type ApplyResult, type LayerSource } from './apply';
import { MAX_TAR_META } from './tar-guard';

export interface ArchiveLayer {
  source: LayerSource;
  /** Bytes as stored in the archive. */
  size: number;
  /** The descriptor's digest (OCI), checked while the layer is applied. */
  digest?: string;
  mediaType?: string;
}

export interface ArchiveImage {
  /** The config JSON exactly as stored: its sha256 is the image ID. */
  configBytes: Buffer;
  /** sha256:<hex> of configBytes. */
  id: string;
  config: { rootfs: { type: string; diff_ids: string[] }; [k: string]: unknown };
  /** name:tag, as the archive names them (may be empty). */
  repoTags: string[];
  layers: ArchiveLayer[];
}

export interface ImageArchive {
  path: string;
  format: 'docker-archive' | 'oci';
  images: ArchiveImage[];
}

interface Member { offset: number; size: number; link?: string }

/** A tar file or a directory, seen as a set of named members. */
interface Members {
  has(name: string): boolean;
  read(name: string, max?: number): Promise<Buffer>;
  source(name: string): { source: LayerSource; size: number };
}

const MAX_JSON = 16 << 20;

function clean(name: string): string {
  return path.posix.normalize(name.replace(/^(\.\/)+/, '')).replace(/^\/+/, '');
}

/** Index a tar file's members: name -> body offset and size. Resolves symlinked members. */
async function tarMembers(file: string): Promise<Members> {
  const fh = await fsp.open(file, 'r').catch((e) => { throw ioError('open image archive', file, e); });
  const map = new Map<string, Member>();
  try {
    const { size: total } = await fh.stat();
    const block = Buffer.alloc(512);
    await fh.read(block, 0, 2, 0);
    if (block[0] === 0x1f && block[1] === 0x8b) {
      throw new ThinError('E_PARSE', `${file} is gzip-compressed: gunzip it first (gunzip -k ${file}), then import the .tar`, { file, kind: 'gzip' });
    }
    let off = 0;
    let last = '';
    let ended = false;
    let longName: string | undefined;
    let pax: Record<string, string> | undefined;
    while (off + 512 <= total) {
      await fh.read(block, 0, 512, off);
      let h;
      try { h = headers.decode(block, 'utf-8', false); } catch (e) {
        throw new ThinError('E_PARSE', `${file} is not a tar archive (bad header at byte ${off}: ${(e as Error).message})`, { file });
      }
      if (!h) { ended = true; break; } // end-of-archive block
      const body = off + 512;
      const bad = (what: string): never => { throw new ThinError('E_PARSE', `${file}: the tar header at byte ${off} ${what}; the archive is damaged`, { file, kind: 'bad_header', offset: off }); };
      if (!Number.isSafeInteger(h.size) || h.size < 0) bad(`has size ${String(h.size)}, which is not a byte count`);
      const meta = h.type === 'gnu-long-path' || h.type === 'pax-header' || h.type === 'pax-global-header' || h.type === 'gnu-long-link-path';
      if (meta && h.size > MAX_TAR_META) bad(`is a ${h.type} of ${h.size} bytes; thinsim reads at most ${MAX_TAR_META} (as Go's archive/tar)`);
      const span = Math.ceil(h.size / 512) * 512;
      if (meta && body + h.size > total) { off = body + span; break; } // cut short: reported below as truncated
      const small = async () => { const b = Buffer.alloc(h!.size); await fh.read(b, 0, h!.size, body); return b; };
      if (h.type === 'gnu-long-path') longName = headers.decodeLongPath(await small(), 'utf-8');
      else if (h.type === 'pax-header') pax = headers.decodePax(await small());
      else if (h.type !== 'pax-global-header' && h.type !== 'gnu-long-link-path') {
        const name = clean(pax?.path ?? longName ?? h.name);
        last = name;
        const linkname = pax?.linkpath ?? h.linkname ?? undefined;
        if (pax?.size !== undefined && !/^\d+$/.test(pax.size)) bad(`has PAX size "${pax.size.slice(0, 40)}", which is not a byte count`);
        const size = pax?.size !== undefined ? Number(pax.size) : h.size;
        if (!Number.isSafeInteger(size)) bad(`has PAX size ${pax?.size}, beyond 2^53-1`);
        if (h.type === 'symlink' && linkname) map.set(name, { offset: 0, size: 0, link: clean(path.posix.join(path.posix.dirname(name), linkname)) });
        else if (h.type === 'link' && linkname) map.set(name, { offset: 0, size: 0, link: clean(linkname) });
        else if (h.type === 'file' || h.type === 'contiguous-file') map.set(name, { offset: body, size });
        longName = undefined; pax = undefined;
        off = body + Math.ceil(size / 512) * 512;
        continue;
      }
      off = body + span;
    }
    // A tar ends with zero blocks, or at least at a member's end: anything else was cut short.
    if (!ended && off !== total) {
      const what = off > total ? `member ${last || '?'} runs past the end` : `a partial header at byte ${off}`;
      throw new ThinError('E_PARSE', `${file} is a truncated tar: it ends at byte ${total} (${what}); copy or save it again`, { file, kind: 'truncated', bytes: total });
    }
  } finally { await fh.close(); }
  const get = (name: string): Member => {
    let m = map.get(clean(name));
    for (let hops = 0; m?.link !== undefined && hops < 8; hops++) m = map.get(m.link);
    if (!m || m.link !== undefined) throw new ThinError('E_NOT_FOUND', `${file} has no member ${name}`, { file, path: name });
    return m;
  };
  return {
    has: (name) => map.has(clean(name)),
    async read(name, max = MAX_JSON) {
      const m = get(name);
      if (m.size > max) throw new ThinError('E_INVALID', `${file}: member ${name} is ${m.size} bytes, more than the ${max} expected`, { file, path: name });
      const b = Buffer.alloc(m.size);
      const fh2 = await fsp.open(file, 'r');
      try { await fh2.read(b, 0, m.size, m.offset); } finally { await fh2.close(); }
      return b;
    },
    source(name) { const m = get(name); return { source: { file, start: m.offset, length: m.size }, size: m.size }; },
  };
}

function dirMembers(dir: string): Members {
  const at = (name: string) => {
    const p = path.join(dir, clean(name));
    if (path.relative(dir, p).startsWith('..')) throw new ThinError('E_INVALID', `${dir}: member ${name} is outside the archive`, { file: dir, path: name });
    return p;
  };
  return {
    has: (name) => fs.existsSync(at(name)),
    async read(name, max = MAX_JSON) {
      const p = at(name);
      const st = await fsp.stat(p).catch((e) => { throw ioError('read', p, e); });
      if (st.size > max) throw new ThinError('E_INVALID', `${p} is ${st.size} bytes, more than the ${max} expected`, { file: p });
      return fsp.readFile(p);
    },
    source(name) {
      const p = at(name);
      let size: number;
      try { size = fs.statSync(p).size; } catch (e) { throw ioError('open layer', p, e); }
      return { source: { file: p }, size };
    },
  };
}

function parseJson<T>(b: Buffer, where: string): T {
  try { return JSON.parse(b.toString('utf8')) as T; } catch (e) {
    throw new ThinError('E_PARSE', `${where} is not valid JSON: ${(e as Error).message}`, { file: where });
  }
}

export function sha256(b: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

function checkConfig(c: ArchiveImage['config'], where: string, layerCount: number): void {
  const ids = c?.rootfs?.diff_ids;
  if (!Array.isArray(ids) || ids.some((d) => typeof d !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d))) {
    throw new ThinError('E_PARSE', `${where}: rootfs.diff_ids must be a list of sha256:<hex> digests`, { file: where });
  }
  if (ids.length !== layerCount) {
    throw new ThinError('E_CORRUPT', `${where}: the config lists ${ids.length} diff_ids but the manifest ${layerCount} layers`, { file: where });
  }
}

const blobName = (digest: string) => {
  const m = /^(sha256|sha512):([0-9a-f]+)$/.exec(digest);
  if (!m) throw new ThinError('E_PARSE', `bad digest "${digest}"`, {});
  return `blobs/${m[1]}/${m[2]}`;
};

async function dockerImages(m: Members, where: string): Promise<ArchiveImage[]> {
  const manifest = parseJson<Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>>(await m.read('manifest.json'), `${where}:manifest.json`);
  if (!Array.isArray(manifest)) throw new ThinError('E_PARSE', `${where}:manifest.json is not a list of images`, { file: where });
  const out: ArchiveImage[] = [];
  for (const e of manifest) {
    const configBytes = await m.read(e.Config);
    const config = parseJson<ArchiveImage['config']>(configBytes, `${where}:${e.Config}`);
    checkConfig(config, `${where}:${e.Config}`, e.Layers.length);
    out.push({ configBytes, id: sha256(configBytes), config, repoTags: e.RepoTags ?? [], layers: e.Layers.map((l) => ({ ...m.source(l) })) });
  }
  return out;
}

interface Descriptor { mediaType: string; digest: string; size: number; annotations?: Record<string, string>; platform?: { architecture?: string; os?: string } }
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', ia32: '386' };

async function ociImages(m: Members, where: string, layoutName: string): Promise<ArchiveImage[]> {
  const index = parseJson<{ manifests: Descriptor[] }>(await m.read('index.json'), `${where}:index.json`);
  const out: ArchiveImage[] = [];
  const visit = async (d: Descriptor, tag: string | undefined, depth: number): Promise<void> => {
    const bytes = await m.read(blobName(d.digest));
    if (sha256(bytes) !== d.digest) throw new ThinError('E_CORRUPT', `${where}: blob ${d.digest} does not hash to its name`, { file: where });
    const doc = parseJson<{ mediaType?: string; manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] }>(bytes, `${where}:${d.digest}`);
    if (doc.manifests) { // an image index: the entry for this platform, else the first
      if (depth > 4) throw new ThinError('E_PARSE', `${where}: image indexes nest too deep`, { file: where });
      const want = doc.manifests.find((x) => x.platform?.os === 'linux' && x.platform?.architecture === GOARCH[process.arch]) ?? doc.manifests[0];
      if (want) await visit(want, tag, depth + 1);
      return;
    }
    if (!doc.config || !doc.layers) throw new ThinError('E_PARSE', `${where}: manifest ${d.digest} has no config or layers`, { file: where });
    const configBytes = await m.read(blobName(doc.config.digest));
    if (sha256(configBytes) !== doc.config.digest) throw new ThinError('E_CORRUPT', `${where}: config blob ${doc.config.digest} does not hash to its name`, { file: where });
    const config = parseJson<ArchiveImage['config']>(configBytes, `${where}:${doc.config.digest}`);
    checkConfig(config, `${where}:${doc.config.digest}`, doc.layers.length);
    const repoTags = tag ? [tag.includes(':') && !tag.endsWith(':') ? tag : `${layoutName}:${tag}`] : [];
    const layers = doc.layers.map((l) => ({ ...m.source(blobName(l.digest)), digest: l.digest, mediaType: l.mediaType }));
    const same = out.find((i) => i.id === sha256(configBytes));
    if (same) { same.repoTags.push(...repoTags); return; }
    out.push({ configBytes, id: sha256(configBytes), config, repoTags, layers });
  };
  for (const d of index.manifests ?? []) await visit(d, d.annotations?.['org.opencontainers.image.ref.name'], 0);
  return out;
}

/** Open a docker-save tarball, an OCI layout tar, or either unpacked into a directory. */
export async function openImageArchive(p: string): Promise<ImageArchive> {
  const st = await fsp.stat(p).catch((e) => { throw ioError('open image archive', p, e); });
  const m = st.isDirectory() ? dirMembers(p) : await tarMembers(p);
  const layoutName = path.basename(p).replace(/\.(tar|oci)$/, '') || 'image';
  if (m.has('manifest.json')) return { path: p, format: 'docker-archive', images: await dockerImages(m, p) };
  if (m.has('oci-layout') && m.has('index.json')) return { path: p, format: 'oci', images: await ociImages(m, p, layoutName) };
  throw new ThinError('E_INVALID', `${p} is neither a docker save archive (no manifest.json) nor an OCI image layout (no oci-layout and index.json)`, { file: p });
}

/** ChainID(L1) = DiffID(L1); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256(`${out[out.length - 1]} ${d}`));
  return out;
}

/**
 * Apply every layer of `img` in order onto a plain directory (what `umoci unpack` does for
 * a rootfs), checking each DiffID against the config. For tests, benchmarks and inspection;
 * importing into a pool is image.ts.
 */
export async function unpackImage(img: ArchiveImage, dir: string): Promise<ApplyResult[]> {
  const out: ApplyResult[] = [];
  for (const [i, l] of img.layers.entries()) {
    const r = await applyLayer(l.source, dir, { expectBlobDigest: l.digest });
    checkDiffId(img, i, r.diffId);
    out.push(r);
  }
  return out;
}

/** Throw E_CORRUPT when layer i's computed DiffID is not the one the config lists. */
export function checkDiffId(img: ArchiveImage, i: number, diffId: string): void {
  const want = img.config.rootfs.diff_ids[i];
  if (diffId !== want) {
    throw new ThinError('E_CORRUPT', `layer ${i + 1} of image ${img.id.slice(7, 19)} has DiffID ${diffId}, but the image config lists ${want}`, { kind: 'diff_id_mismatch', layer: i + 1, want, got: diffId });
  }
}
