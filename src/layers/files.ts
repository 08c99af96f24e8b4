/**
 * Reading a layer's files back: mount it read-only and read or walk the tree from a tree
 * worker (tree.ts), then unmount (always).
 *
 * Contract: read-only on every kind of layer; paths are taken relative to the layer's
 * root and may not climb out of it; this process never touches the mount itself (the NBD
 * server that backs it runs here). Missing files are E_NOT_FOUND.
 */
import { ThinError, isThinError } from '../errors';
import type { LayerStore } from './snapshotter';
import type { LayerFileEntry } from './tree-ops';

export type { LayerFileEntry };

export async function readLayerFile(store: LayerStore, name: string, file: string): Promise<Buffer> {
  return store.withTree(name, async (tree) => {
    try {
      return await tree.read(file);
    } catch (e) {
      if (isThinError(e, 'E_NOT_FOUND')) throw new ThinError('E_NOT_FOUND', `layer "${name}" has no file ${file}; list them with thinsim layer files`, { layer: name, path: file });
      if (isThinError(e, 'E_INVALID')) throw new ThinError('E_INVALID', `${e.message} in layer "${name}"`, { layer: name, path: file });
      throw e;
    }
  }, { readOnly: true });
}

/** Every entry under the root (lost+found included), sorted by path, directories before their contents. */
export async function listLayerFiles(store: LayerStore, name: string): Promise<LayerFileEntry[]> {
  return store.withTree(name, (tree) => tree.list(), { readOnly: true });
}
