/**
 * Reading a layer's files back: mount it read-only through NBD and read or walk the
 * tree, then unmount (always).
 *
 * Contract: read-only on every kind of layer; paths are taken relative to the layer's
 * root and may not climb out of it; only asynchronous fs calls touch the mount (the NBD
 * server that backs it runs in this process). Missing files are E_NOT_FOUND.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { ThinError } from '../errors';
import type { LayerStore } from './snapshotter';

export interface LayerFileEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
}

function inside(root: string, p: string): string {
  const full = path.resolve(root, '.' + path.posix.normalize('/' + p));
  if (full !== root && !full.startsWith(root + '/')) throw new ThinError('E_INVALID', `path "${p}" leaves the layer's root`);
  return full;
}

export async function readLayerFile(store: LayerStore, name: string, file: string): Promise<Buffer> {
  return store.withMounted(name, async (root) => {
    try {
      return await fsp.readFile(inside(root, file));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new ThinError('E_NOT_FOUND', `layer "${name}" has no file ${file}; list them with thinsim layer files`, { layer: name, path: file });
      if (code === 'EISDIR') throw new ThinError('E_INVALID', `${file} is a directory in layer "${name}"`, { layer: name, path: file });
      throw e;
    }
  }, { readOnly: true });
}

/** Every entry under the root (lost+found included), sorted by path, directories before their contents. */
export async function listLayerFiles(store: LayerStore, name: string): Promise<LayerFileEntry[]> {
  return store.withMounted(name, async (root) => {
    const out: LayerFileEntry[] = [];
    const walk = async (dir: string) => {
      const names = (await fsp.readdir(dir)).sort();
      for (const n of names) {
        const full = path.join(dir, n);
        const st = await fsp.lstat(full);
        const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
        out.push({ path: '/' + path.relative(root, full), type, size: st.size, mode: st.mode & 0o7777 });
        if (st.isDirectory()) await walk(full);
      }
    };
    await walk(root);
    return out;
  }, { readOnly: true });
}
