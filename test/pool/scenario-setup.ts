/**
 * Shared setup for the pool scenario tests (test/pool/scenarios-*.test.ts): a small sparse pool
 * in a temp dir with its ContentModel, and helpers that apply one operation (create, snapshot,
 * write, discard, delete, fill) to both the pool and the model. Registers no tests: node --test
 * loads this file and it must do nothing.
 */

import type { TestContext } from 'node:test';
import * as fs from 'node:fs';
import { Pool, type CreateOptions, type OpenOptions } from '../../src/pool/pool';
import { Rand, pattern } from '../../support/random';
import { ContentModel, MiB, tempDir } from '../helpers/pool-model';

export interface Setup {
  dir: string;
  pool: Pool;
  model: ContentModel;
  cb: number;
}

/** A small sparse pool in a temp dir, closed (if still open) when the test ends. */
export async function makePool(t: TestContext, c: CreateOptions = {}, o?: OpenOptions): Promise<Setup> {
  const dir = tempDir(t);
  const s = {} as Setup;
  s.dir = dir;
  s.pool = Pool.create(dir, { dataSize: 64 * MiB, metadataSize: 8 * MiB, ...c });
  if (o) {
    await s.pool.close();
    s.pool = Pool.open(dir, o);
  }
  t.after(() => s.pool.close().catch(() => undefined));
  s.model = new ContentModel(s.pool.chunkBytes, { zero: c.zero, discard: c.discard });
  s.cb = s.pool.chunkBytes;
  return s;
}

export async function thin(s: Setup, id: number, size: number): Promise<void> {
  await s.pool.createThin(id, size);
  s.model.createThin(id, size);
}

export async function snap(s: Setup, id: number, origin: number): Promise<void> {
  await s.pool.createSnap(id, origin);
  s.model.createSnap(id, origin);
}

export async function write(s: Setup, id: number, off: number, data: Buffer): Promise<void> {
  await s.pool.write(id, off, data);
  s.model.write(id, off, data);
}

export async function discard(s: Setup, id: number, off: number, len: number): Promise<void> {
  await s.pool.discard(id, off, len);
  s.model.discard(id, off, len);
}

export async function del(s: Setup, id: number): Promise<void> {
  await s.pool.deleteDevice(id);
  s.model.deleteDevice(id);
}

/** A random [offset, length) inside `size`, any alignment. */
export function range(r: Rand, size: number, maxLen: number): [number, number] {
  const len = 1 + r.int(Math.min(maxLen, size));
  return [r.int(size - len + 1), len];
}

/** Fill `id` with a pattern chunk by chunk (whole chunks). */
export async function fill(s: Setup, id: number, seed: number, from = 0, to = s.model.size(id)): Promise<void> {
  for (let off = from; off < to; off += s.cb) await write(s, id, off, pattern(seed + off, Math.min(s.cb, to - off)));
}

/** A pool whose device 1 (8 MiB) is filled from `seed`, and device 2, a snapshot of it. */
export async function originAndSnapshot(t: TestContext, seed: number): Promise<Setup> {
  const s = await makePool(t);
  await thin(s, 1, 8 * MiB);
  await fill(s, 1, seed);
  await snap(s, 2, 1);
  return s;
}

export function dataBlocksOnHost(file: string): number {
  return fs.statSync(file).blocks;
}
