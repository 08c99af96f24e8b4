/** A fresh pool with a layer store on it, for the image and container tests. */
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { LayerStore } from '../../src/layers/snapshotter';

const MiB = 2 ** 20;

export async function freshStore(dir: string, opts: { dataSize?: number; baseSize?: number } = {}): Promise<LayerStore> {
  const poolDir = path.join(dir, 'pool');
  const p = Pool.create(poolDir, { dataSize: opts.dataSize ?? 2048 * MiB, metadataSize: 32 * MiB });
  await p.close();
  return LayerStore.open(poolDir, { baseSize: opts.baseSize ?? 256 * MiB, commitInterval: 0 });
}
