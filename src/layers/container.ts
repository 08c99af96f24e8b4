/**
 * Containers on a layer store, as Docker's devicemapper driver makes them: a `-init`
 * layer on the image's top layer, holding Docker's init files, and the container's own
 * read-write layer on top of that.
 *
 * Contract:
 * - create: a fresh mount id (64 random hex digits, as Docker's layer store draws one);
 *   the init layer `<mount-id>-init` is prepared on the image's top layer, gets what
 *   Docker's initlayer.Setup makes when missing (directories /dev/pts /dev/shm /proc /sys;
 *   empty files /.dockerenv /etc/resolv.conf /etc/hosts /etc/hostname /dev/console;
 *   the symlink /etc/mtab -> /proc/mounts) and is committed; the container layer
 *   `<mount-id>` is prepared on it (active). Then containers/<id>/config.v2.json and
 *   layerdb/mounts/<container id>/{mount-id,init-id,parent} are written. A failure
 *   removes whatever of the two layers exists.
 * - Both are atomic across a kill (scratch.ts): the two layers are this process's
 *   scratch work until the mount record exists. A create killed before it wrote the
 *   record leaves layers the next read-write open removes; one killed after, layers it
 *   keeps.
 * - remove: claims both layers as scratch work (one index write), removes the mount
 *   record (the commit point: killed before, the next open keeps the container whole;
 *   after, it removes the layers), then the container layer and the init layer (each
 *   discarded, so a loop-lvm data file gives the space back), then the config. Reports
 *   the data bytes the pool freed, read from the pool after a commit.
 * - Names are unique; a container is found by name, full ID, or a unique ID prefix.
 */
import { randomBytes } from 'node:crypto';
import { crashPoint } from '../crash-points';
import { ThinError } from '../errors';
import { imageChain } from './image';
import { ImageRecords, type MountRecord } from './image-records';
import type { LayerStore } from './snapshotter';

export interface ContainerInfo extends MountRecord { name: string; image: string }

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export function listContainers(store: LayerStore): ContainerInfo[] {
  return new ImageRecords(store.pool.dir).mounts().map((m) => ({ ...m, name: m.name ?? '', image: m.image ?? '' }));
}

export function findContainer(store: LayerStore, ref: string): ContainerInfo {
  const all = listContainers(store);
  const hit = all.find((c) => c.name === ref || c.containerId === ref);
  if (hit) return hit;
  const byPrefix = /^[0-9a-f]+$/.test(ref) ? all.filter((c) => c.containerId.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw new ThinError('E_INVALID', `"${ref}" starts ${byPrefix.length} container IDs; give more digits`, { container: ref });
  throw new ThinError('E_NOT_FOUND', `no container "${ref}" in ${store.pool.dir}; see thinsim container ls`, { container: ref });
}

export interface CreateContainerReport extends ContainerInfo { initFiles: string[]; seconds: number }

export async function createContainer(store: LayerStore, imageRef: string, name: string): Promise<CreateContainerReport> {
  const t0 = performance.now();
  if (!NAME_RE.test(name)) throw new ThinError('E_INVALID', `container name "${name}" is not allowed: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, as Docker does`, { container: name });
  const records = new ImageRecords(store.pool.dir);
  if (records.mounts().some((m) => m.name === name)) throw new ThinError('E_DEVICE_EXISTS', `a container named "${name}" exists already; remove it or pick another name`, { container: name });
  const img = records.resolve(imageRef);
  const chain = imageChain(img);
  const top = store.stat(chain[chain.length - 1]); // throws E_NOT_FOUND if the image's layers are gone
  const containerId = randomBytes(32).toString('hex');
  const mountId = randomBytes(32).toString('hex');
  const initId = `${mountId}-init`;
  let initFiles: string[] = [];
  const until = records.mountRecordPath(containerId);
  try {
    await store.prepare(initId, top.name, { until });
    initFiles = await store.withTree(initId, (tree) => tree.init(), { readOnly: false });
    await store.commit(initId, initId, {}, { keepOwner: true });
    crashPoint('container:create:1');
    await store.prepare(mountId, initId, { until });
    crashPoint('container:create:2');
  } catch (e) {
    return store.rollback([initId, mountId], e);
  }
  const rec: MountRecord = { containerId, mountId, initId, parent: top.chainId ?? chain[chain.length - 1], name, image: img.id, created: new Date().toISOString() };
  records.writeMount(rec);
  crashPoint('container:create:3');
  store.adopt([initId, mountId]);
  return { ...rec, name, image: img.id, initFiles, seconds: (performance.now() - t0) / 1000 };
}

export interface RemoveContainerReport { containerId: string; name: string; layersRemoved: string[]; freedBytes: number }

export async function removeContainer(store: LayerStore, ref: string): Promise<RemoveContainerReport> {
  const c = findContainer(store, ref);
  await store.pool.commit();
  const before = store.pool.status().usedDataBlocks;
  const present = new Set(store.list().map((l) => l.name));
  const layers = [c.mountId, c.initId].filter((n) => present.has(n));
  const records = new ImageRecords(store.pool.dir);
  store.claim(layers, records.mountRecordPath(c.containerId));
  crashPoint('container:rm:1');
  records.removeMount(c.containerId);
  crashPoint('container:rm:2');
  const removed: string[] = [];
  for (const n of layers) {
    await store.remove(n);
    removed.push(n);
    crashPoint('container:rm:3');
  }
  records.removeContainerConfig(c.containerId);
  await store.pool.commit();
  return { containerId: c.containerId, name: c.name, layersRemoved: removed, freedBytes: (before - store.pool.status().usedDataBlocks) * store.pool.chunkBytes };
}
