/**
 * The one way CLI verbs open a layer store (layer, image and container verbs).
 *
 * Contract: `withStore` opens read-write (taking pool.lock, rolling back an unfinished
 * Docker transaction), runs `fn`, and closes, which commits; a failure of `fn` still
 * closes the store (a failure to close is reported over it: it is the newer news). There is no periodic
 * commit (commitInterval 0): every layer operation commits through Docker's transaction
 * protocol, and anything a verb leaves unfinished is rolled back at the next open, as for
 * `withPool`. `withStoreReadOnly` opens without the lock and never writes.
 */
import { ThinError } from '../errors';
import type { LayerStore, LayerStoreOptions } from '../layers';
import { parseSize } from '../units';

const loadLayers = () => import('../layers'); // loaded by the verbs that use it

export async function withStore<T>(dir: string, opts: LayerStoreOptions, fn: (s: LayerStore) => Promise<T>): Promise<T> {
  const { LayerStore } = await loadLayers();
  const s = await LayerStore.open(dir, { ...opts, commitInterval: 0 });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

export async function withStoreReadOnly<T>(dir: string, fn: (s: LayerStore) => T | Promise<T>): Promise<T> {
  const { LayerStore } = await loadLayers();
  const s = await LayerStore.openReadOnly(dir);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** --min-free-space as Docker's dm.min_free_space: a percentage from 0 to 99. */
function parseFraction(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(s);
  const v = m ? Number(m[1]) : NaN;
  if (!(v >= 0 && v < 100)) throw new ThinError('E_INVALID', `--min-free-space "${s}" must be a percentage from 0 to 99, e.g. 10%`);
  return v / 100;
}

/** --base-size, --fs and --min-free-space (when the verb has them) as store options. */
export function storeOptions(a: { baseSize?: string; fs?: string; minFreeSpace?: string }): LayerStoreOptions {
  const o: LayerStoreOptions = {};
  if (a.baseSize !== undefined) o.baseSize = parseSize(a.baseSize, '--base-size');
  if (a.fs !== undefined) o.filesystem = a.fs as LayerStoreOptions['filesystem'];
  if (a.minFreeSpace !== undefined) o.minFreeSpace = parseFraction(a.minFreeSpace);
  return o;
}
