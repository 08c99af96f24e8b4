/**
 * Synthetic layer stacks: a chain of committed layers made of block-level changes, with
 * no filesystem, for experiments and for the long-chain tests.
 *
 * Contract:
 * - Each layer is prepared on the previous one (the first on `parent`, or on the base
 *   device), changed, and committed. Per layer, in this order:
 *     delete  Z % of the chunks mapped at the start of the layer are discarded;
 *     modify  Y % of the chunks still mapped get one 4 KiB block overwritten at a
 *             random aligned offset (a sharing break: the rest of the chunk is copied);
 *     new     X % of the device's chunks, chosen among those unmapped at the start of
 *             the layer (fewer when fewer are), are written whole; a chunk deleted in
 *             this layer is not rewritten, so each change shows in thin_delta as
 *             exactly one of left_only (delete), different (modify), right_only (new).
 *   Percentages are rounded to whole chunks.
 * - Deterministic for a seed: the choices come from one seeded PRNG, requests are
 *   issued one at a time (allocation order is fixed), and the pool commits only at
 *   fixed points, so the same seed on a fresh pool gives identical metadata (the same
 *   thin_dump). Open the store with commitInterval 0 for that (the CLI does).
 * - The bytes written are a function of (seed, layer, chunk), so a reader can check
 *   them: synthChunkWord() gives the 32-bit word a chunk (or modified block) is filled with.
 */
import { ThinError } from '../errors';
import type { LayerInfo, LayerStore } from './snapshotter';
import { Mulberry32 } from '../random';

export interface SynthOptions {
  layers: number;
  /** Percent (0-100) of the device's chunks to write new, per layer. */
  newPercent: number;
  /** Percent (0-100) of mapped chunks to overwrite partly, per layer. */
  modifyPercent: number;
  /** Percent (0-100) of mapped chunks to discard, per layer. */
  deletePercent: number;
  seed?: number;
  /** Committed layer to start from (default: the base device). */
  parent?: string;
  /** Layer names are PREFIX-1 ... PREFIX-N (default "synth"). */
  prefix?: string;
  /** Called after each layer is committed. */
  onLayer?: (r: SynthLayerReport) => void;
}

export interface SynthLayerReport {
  name: string;
  deviceId: number;
  newChunks: number;
  modifiedChunks: number;
  deletedChunks: number;
  mappedChunks: number;
}

export interface SynthReport {
  seed: number;
  chunkBytes: number;
  layers: SynthLayerReport[];
  top: LayerInfo | undefined;
}

const BLOCK = 4096;

/** The 32-bit word layer `layer` (1-based) of a `seed` run fills chunk (or block) `vblock` with. */
export function synthChunkWord(seed: number, layer: number, vblock: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(layer, 0xc2b2ae35) ^ Math.imul(vblock + 1, 0x27d4eb2f);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

function filled(bytes: number, word: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE(word, i);
  return b;
}

/** Take `k` distinct elements of `xs` (partial Fisher-Yates on a copy), returned sorted. */
function sample(rng: Mulberry32, xs: number[], k: number): number[] {
  const a = xs.slice();
  const n = Math.min(k, a.length);
  for (let i = 0; i < n; i++) {
    const j = i + rng.int(a.length - i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n).sort((x, y) => x - y);
}

function checkPercent(v: number, what: string): void {
  if (!(Number.isFinite(v) && v >= 0 && v <= 100)) throw new ThinError('E_INVALID', `--${what} must be a percentage from 0 to 100, got ${v}`);
}

/** Parse "5%", "5" or "0.5%" into a number of percent. */
export function parsePercent(s: string | number, what: string): number {
  const v = typeof s === 'number' ? s : Number(String(s).trim().replace(/%$/, ''));
  checkPercent(v, what);
  return v;
}

export async function synthesize(store: LayerStore, o: SynthOptions): Promise<SynthReport> {
  if (!Number.isSafeInteger(o.layers) || o.layers < 1) throw new ThinError('E_INVALID', `--layers must be a whole number of at least 1, got ${o.layers}`);
  checkPercent(o.newPercent, 'new');
  checkPercent(o.modifyPercent, 'modify');
  checkPercent(o.deletePercent, 'delete');
  const seed = (o.seed ?? 1) >>> 0;
  const prefix = o.prefix ?? 'synth';
  const rng = new Mulberry32(seed);
  const pool = store.pool;
  const cb = pool.chunkBytes;
  const report: SynthReport = { seed, chunkBytes: cb, layers: [], top: undefined };
  let parent = o.parent;
  for (let n = 1; n <= o.layers; n++) {
    const name = `${prefix}-${n}`;
    const key = `${name}.active`;
    const l = await store.prepare(key, parent);
    const chunks = Math.floor(l.size / cb);
    const mapped: number[] = [];
    for (const run of pool.blockStatus(l.deviceId, 0, chunks * cb)) {
      if (!run.mapped) continue;
      for (let c = run.offset / cb; c < (run.offset + run.length) / cb; c++) mapped.push(c);
    }
    const del = sample(rng, mapped, Math.round((mapped.length * o.deletePercent) / 100));
    for (const c of del) await store.discard(key, c * cb, cb);
    const gone = new Set(del);
    const kept = mapped.filter((c) => !gone.has(c));
    const mod = sample(rng, kept, Math.round((kept.length * o.modifyPercent) / 100));
    for (const c of mod) {
      const at = c * cb + rng.int(cb / BLOCK) * BLOCK;
      await store.write(key, at, filled(BLOCK, synthChunkWord(seed, n, at / BLOCK)));
    }
    const want = Math.round((chunks * o.newPercent) / 100);
    const fresh = pickUnmapped(rng, chunks, new Set(mapped), want);
    for (const c of fresh) await store.write(key, c * cb, filled(cb, synthChunkWord(seed, n, c)));
    // Commit points are fixed (flush inside commit), which keeps allocation deterministic.
    const top = await store.commit(name, key);
    const r: SynthLayerReport = {
      name, deviceId: top.deviceId, newChunks: fresh.length, modifiedChunks: mod.length, deletedChunks: del.length,
      mappedChunks: kept.length + fresh.length,
    };
    report.layers.push(r);
    report.top = top;
    o.onLayer?.(r);
    parent = name;
  }
  return report;
}

/** `want` distinct chunks in [0, chunks) not in `mapped`, sorted. */
function pickUnmapped(rng: Mulberry32, chunks: number, mapped: Set<number>, want: number): number[] {
  const free = chunks - mapped.size;
  if (want >= free) {
    const all: number[] = [];
    for (let c = 0; c < chunks; c++) if (!mapped.has(c)) all.push(c);
    return all;
  }
  if (want * 4 > free) {
    const all: number[] = [];
    for (let c = 0; c < chunks; c++) if (!mapped.has(c)) all.push(c);
    return sample(rng, all, want);
  }
  // Sparse case: rejection sampling touches ~want positions, not the whole device.
  const got = new Set<number>();
  while (got.size < want) {
    const c = rng.int(chunks);
    if (!mapped.has(c)) got.add(c);
  }
  return [...got].sort((x, y) => x - y);
}
