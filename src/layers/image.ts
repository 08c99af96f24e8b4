/**
 * Images on a layer store, as Docker's devicemapper driver keeps them: import a
 * `docker save` tarball or an OCI image layout, list images, remove them.
 *
 * Contract:
 * - Import builds each image's chain in order: for a layer whose ChainID the store already
 *   has, that committed layer is shared (no device, no bytes); otherwise prepare (parent =
 *   the layer below), mount, apply the tar (apply.ts), unmount, check the DiffID against
 *   the config's rootfs.diff_ids, and commit under the name = ChainID with its DiffID,
 *   parent ChainID and size (the store writes layerdb/sha256/<ChainID>/...).
 *   ChainID(L1) = DiffID(L1); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
 * - All or nothing per image: on any failure (bad DiffID or blob digest, a tar that will
 *   not apply, no space) the active layer and every layer this import committed for that
 *   image are removed, top down, before the error is rethrown; layers other images share
 *   are never touched. Images already imported from the same archive stay.
 * - Then the config goes to imagedb/content/sha256/<image id> and the tags to
 *   repositories.json (image-records.ts).
 * - Streaming: a layer is read once from the archive (a byte range of it) and never held
 *   in memory, so memory does not grow with the image.
 * - Every number in a report is measured (bytes read, files applied) or read from the
 *   pool (store.usage), never estimated.
 * - Removal untags; an image left without tags is deleted with every layer of its chain
 *   that no other image and no container uses. An image a container uses is refused.
 */
import { crashPoint } from '../crash-points';
import { ThinError } from '../errors';
import type { ApplyResult } from './apply';
import { chainIds, checkDiffId, openImageArchive, type ArchiveImage } from './image-archive';
import { ImageRecords, normalizeTag, type ImageRecord } from './image-records';
import type { LayerStore } from './snapshotter';

export interface ImportProgress {
  image: number;
  images: number;
  /** 1-based layer being worked on. */
  layer: number;
  layers: number;
  /** Stored bytes of this image read so far, and in all. */
  bytes: number;
  totalBytes: number;
  /** Stored bytes of this layer read so far, and in all; files of this layer applied so far. */
  layerBytes: number;
  layerTotal: number;
  files: number;
  /** What just happened, for line-by-line output. */
  event: 'bytes' | 'layer-done';
  report?: LayerImportReport;
}

export interface ImportOptions {
  /** An extra repo:tag for every image imported (e.g. when an OCI layout's ref names only "latest"). */
  tag?: string;
  onProgress?: (p: ImportProgress) => void;
}

export interface LayerImportReport {
  index: number;
  diffId: string;
  chainId: string;
  /** The store's name for the layer (its ChainID). */
  name: string;
  /** true: the store already had this ChainID; nothing was read or written. */
  shared: boolean;
  blobBytes: number;
  tarBytes: number;
  files: number;
  entries: number;
  whiteouts: number;
  opaqueDirs: number;
  seconds: number;
  mappedBytes: number;
  exclusiveBytes: number;
  sharedBytes: number;
  warnings: string[];
}

export interface ImageImportReport { id: string; tags: string[]; layers: LayerImportReport[]; seconds: number }
export interface ImportReport { archive: string; format: 'docker-archive' | 'oci'; filesystem: string; images: ImageImportReport[] }

/** Docker's familiar form: "docker.io/library/x:t" -> "x:t", "docker.io/a/b:t" -> "a/b:t". */
export function familiarTag(t: string): string {
  return normalizeTag(t.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, ''));
}

async function importOne(store: LayerStore, img: ArchiveImage, n: number, of: number, opts: ImportOptions): Promise<ImageImportReport> {
  const t0 = performance.now();
  const diffIds = img.config.rootfs.diff_ids;
  const chain = chainIds(diffIds);
  const totalBytes = img.layers.reduce((s, l) => s + l.size, 0);
  const created: string[] = [];
  const layers: LayerImportReport[] = [];
  let done = 0;
  let parent: string | undefined;
  const progress = (p: Omit<ImportProgress, 'image' | 'images' | 'layers' | 'totalBytes' | 'layerTotal'>) => opts.onProgress?.({ image: n, images: of, layers: img.layers.length, totalBytes, layerTotal: img.layers[p.layer - 1].size, ...p });
  for (const [i, l] of img.layers.entries()) {
    const lt0 = performance.now();
    const have = store.list().find((x) => x.chainId === chain[i] && x.kind === 'committed');
    let r: ApplyResult | undefined;
    if (have) {
      parent = have.name;
    } else {
      const key = `import-${chain[i].slice(7, 19)}-${process.pid}`;
      try {
        await store.prepare(key, parent, { scratch: true });
        if (store.filesystem() === 'none') throw new ThinError('E_UNSUPPORTED', `the layers of ${store.pool.dir} carry no filesystem (created with filesystem "none"); images need ext4 or xfs`);
        r = await store.withTree(key, (tree) => tree.apply(l.source, {
          expectBlobDigest: l.digest,
          onProgress: (b, files) => progress({ layer: i + 1, bytes: done + b, layerBytes: b, files, event: 'bytes' }),
        }), { readOnly: false });
        crashPoint('image:import:1');
        checkDiffId(img, i, r.diffId);
        const info = await store.commit(chain[i], key, { chainId: chain[i], diffId: diffIds[i], parentChainId: i > 0 ? chain[i - 1] : undefined, size: r.fileBytes });
        created.push(info.name);
        crashPoint('image:import:2');
        parent = info.name;
      } catch (e) {
        // This image's layers, oldest first, then the one in progress: all or nothing.
        return store.rollback([...created, key], e);
      }
    }
    done += l.size;
    const rep: LayerImportReport = {
      index: i + 1, diffId: diffIds[i], chainId: chain[i], name: parent!, shared: !!have,
      blobBytes: have ? 0 : l.size, tarBytes: r?.tarBytes ?? 0, files: r?.files ?? 0, entries: r?.entries ?? 0,
      whiteouts: r?.whiteouts ?? 0, opaqueDirs: r?.opaqueDirs ?? 0, seconds: (performance.now() - lt0) / 1000,
      mappedBytes: 0, exclusiveBytes: 0, sharedBytes: 0, warnings: r?.warnings ?? [],
    };
    layers.push(rep);
    progress({ layer: i + 1, bytes: done, layerBytes: l.size, files: rep.files, event: 'layer-done', report: rep });
  }
  const records = new ImageRecords(store.pool.dir);
  records.writeImage(img.id, img.configBytes);
  crashPoint('image:import:3');
  const tags = [...new Set([...img.repoTags.map(familiarTag), ...(opts.tag ? [familiarTag(opts.tag)] : [])])];
  for (const t of tags) records.tag(t, img.id);
  crashPoint('image:import:4');
  return { id: img.id, tags, layers, seconds: (performance.now() - t0) / 1000 };
}

/** Import every image of a docker-save tarball or OCI layout (tar or directory) into `store`. */
export async function importImage(store: LayerStore, archivePath: string, opts: ImportOptions = {}): Promise<ImportReport> {
  const archive = await openImageArchive(archivePath);
  if (archive.images.length === 0) throw new ThinError('E_INVALID', `${archivePath} holds no image`, { file: archivePath });
  const images: ImageImportReport[] = [];
  for (const [k, img] of archive.images.entries()) images.push(await importOne(store, img, k + 1, archive.images.length, opts));
  await store.pool.flush();
  const usage = new Map(store.usage().map((u) => [u.name, u]));
  for (const l of images.flatMap((i) => i.layers)) {
    const u = usage.get(l.name);
    if (u) Object.assign(l, { mappedBytes: u.mappedBytes, exclusiveBytes: u.exclusiveBytes, sharedBytes: u.sharedBytes });
  }
  return { archive: archivePath, format: archive.format, filesystem: store.filesystem(), images };
}

export interface ImageRow {
  id: string;
  tags: string[];
  created?: string;
  layers: number;
  /** The top layer's name in the store (its ChainID). */
  top: string;
  /** Bytes the top layer's device maps (the whole image, shared or not), and the image's own exclusive bytes. */
  mappedBytes: number;
  exclusiveBytes: number;
  /** Whether every layer of the chain is present in the store. */
  complete: boolean;
}

/** The chain of store layer names (ChainIDs) of an image, bottom up. */
export function imageChain(img: ImageRecord): string[] {
  return chainIds(img.config.rootfs.diff_ids);
}

export function listImages(store: LayerStore): ImageRow[] {
  const records = new ImageRecords(store.pool.dir);
  const present = new Set(store.list().filter((l) => l.chainId).map((l) => l.chainId!));
  const usage = new Map(store.usage().map((u) => [u.name, u]));
  const allChains = records.images().map((i) => imageChain(i));
  return records.images().map((img) => {
    const chain = imageChain(img);
    const mine = chain.filter((c) => allChains.filter((other) => other.includes(c)).length === 1);
    const top = chain[chain.length - 1];
    return {
      id: img.id, tags: img.tags, created: typeof img.config.created === 'string' ? img.config.created : undefined,
      layers: chain.length, top, mappedBytes: usage.get(top)?.mappedBytes ?? 0,
      exclusiveBytes: mine.reduce((s, c) => s + (usage.get(c)?.exclusiveBytes ?? 0), 0),
      complete: chain.every((c) => present.has(c)),
    };
  });
}

export interface RemoveImageReport { untagged: string[]; deleted?: string; layersRemoved: string[]; freedBytes: number }

/** `docker rmi`: untag; an image left untagged goes, with the layers only it used. */
export async function removeImage(store: LayerStore, ref: string): Promise<RemoveImageReport> {
  const records = new ImageRecords(store.pool.dir);
  const img = records.resolve(ref);
  const chain = imageChain(img);
  const byTag = img.tags.includes(normalizeTag(ref)) ? normalizeTag(ref) : undefined;
  const untag = byTag && img.tags.length > 1 ? [byTag] : img.tags;
  if (untag.length === img.tags.length) {
    const users = records.mounts().filter((m) => m.image === img.id || chain.includes(m.parent));
    if (users.length) {
      throw new ThinError('E_INVALID', `image ${img.id.slice(7, 19)} is used by container ${users.map((u) => u.name ?? u.containerId.slice(0, 12)).join(', ')}; remove the container first (thinsim container rm)`, { image: img.id });
    }
  }
  for (const t of untag) records.untag(t);
  crashPoint('image:rm:1');
  if (untag.length < img.tags.length) return { untagged: untag, layersRemoved: [], freedBytes: 0 };
  await store.pool.commit();
  const before = store.pool.status().usedDataBlocks;
  records.removeImage(img.id);
  crashPoint('image:rm:2');
  const inUse = new Set(records.images().flatMap((i) => imageChain(i)));
  const names = new Map(store.list().filter((l) => l.chainId).map((l) => [l.chainId!, l.name]));
  const removed: string[] = [];
  for (const c of [...chain].reverse()) {
    if (inUse.has(c)) break; // it and everything below it are some other image's too
    const name = names.get(c);
    if (!name) continue;
    await store.remove(name);
    removed.push(name);
    crashPoint('image:rm:3');
  }
  await store.pool.commit(); // freed blocks count as free once committed, as in the kernel
  const freedBytes = (before - store.pool.status().usedDataBlocks) * store.pool.chunkBytes;
  return { untagged: untag, deleted: img.id, layersRemoved: removed, freedBytes };
}
