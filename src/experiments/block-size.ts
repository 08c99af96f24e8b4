/**
 * block-size: the pool's data block (chunk) size on one layered workload, as Docker
 * builds it: a base device written in full, a chain of snapshots each changing a
 * share of it with 4 KiB writes, and a container layer of small random writes on top.
 * The kernel's trade-off (thin-provisioning.txt): small chunks (64K) suit many
 * snapshots, large ones (512K+) suit plain provisioning.
 *
 * Contract: every chunk size gets the same offsets (one seed per repeat), so the
 * chunks touched at 2x the size are a superset of those at x; figures come from the
 * pool's status (used data and metadata blocks) and the host's stat.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Pool } from '../pool/pool';
import { Experiment, ExperimentContext, KiB, MiB, requireSizeInMiB } from './experiment';
import * as host from './host';
import { Row } from './report/model';
import { interleave, OpsResult, payload, Rng, summarize, timeOps, workloadStats } from './runner';

export const CHUNK_SIZES = [64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, MiB];
const label = (b: number) => (b >= MiB ? `${b / MiB}M` : `${b / KiB}K`);

interface Trial {
  base: OpsResult;
  layers: OpsResult;
  layerBytesWritten: number;
  usedDataBytes: number;
  layerSpaceBytes: number;
  metadataBlocks: number;
  hostAllocatedBytes: number;
}

export interface BlockSizeParams {
  size: number;
  layers: number;
  /** Share of the device's 4 KiB blocks each layer rewrites. */
  share: number;
}

export function blockSizeParams(ctx: { size: number; quick: boolean }): BlockSizeParams {
  return { size: ctx.size, layers: ctx.quick ? 3 : 8, share: 0.02 };
}

/** 4 KiB offsets each layer writes: same for every chunk size (seeded per layer). */
export function layerOffsets(p: BlockSizeParams, seed: number, layer: number): number[] {
  const r = new Rng(seed * 1000 + layer);
  const blocks = p.size / (4 * KiB);
  const n = Math.max(1, Math.round(blocks * p.share));
  return Array.from({ length: n }, () => r.int(blocks) * 4 * KiB);
}

async function trial(chunk: number, ctx: ExperimentContext, seed: number): Promise<Trial> {
  const p = blockSizeParams(ctx);
  const dir = host.mkTemp(ctx.workDir, `bs-${label(chunk)}-`);
  const pool = Pool.create(path.join(dir, 'pool'), { dataSize: (p.layers + 3) * p.size, metadataSize: 32 * MiB, blockSize: chunk / 512, mode: 'loop-lvm' });
  try {
    await pool.createThin(1, p.size);
    const big = payload(MiB, seed);
    const base = await timeOps(p.size / MiB, MiB, (i) => pool.write(1, i * MiB, big));
    const small = payload(4 * KiB, seed + 1);
    const all: OpsResult[] = [];
    // Layers 2..layers+1 are image layers; the last is the container's writable layer.
    for (let k = 1; k <= p.layers + 1; k++) {
      await pool.createSnap(k + 1, k);
      const offs = layerOffsets(p, seed, k);
      all.push(await timeOps(offs.length, 4 * KiB, (i) => pool.write(k + 1, offs[i], small)));
    }
    await pool.flush();
    const st = pool.status();
    const usedDataBytes = st.usedDataBlocks * chunk;
    const layers: OpsResult = {
      ops: all.reduce((a, r) => a + r.ops, 0), bytes: all.reduce((a, r) => a + r.bytes, 0),
      seconds: all.reduce((a, r) => a + r.seconds, 0), latenciesMs: all.flatMap((r) => r.latenciesMs),
    };
    return {
      base, layers, layerBytesWritten: layers.bytes, usedDataBytes, layerSpaceBytes: usedDataBytes - p.size,
      metadataBlocks: st.usedMetadataBlocks, hostAllocatedBytes: host.fileSpace(st.dataFile).allocatedBytes,
    };
  } finally {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const blockSize: Experiment = {
  name: 'block-size',
  title: 'Data block (chunk) size on a layered workload',
  question: 'Which chunk size (64K .. 1M) should a pool use for image layers: how much space does copy-on-write cost, how much metadata, how fast?',
  sizeMeans: 'the base device under the layers',
  defaults: { size: 64 * MiB, repeat: 3 },
  quick: { size: 16 * MiB, repeat: 2 },
  tools: [],
  async run(ctx) {
    requireSizeInMiB(ctx.size, 2);
    const p = blockSizeParams(ctx);
    const configs = CHUNK_SIZES.map(label);
    const trials = await interleave(configs, ctx.repeat, (c, rep) => trial(CHUNK_SIZES[configs.indexOf(c)], ctx, 7 + rep), ctx.progress, 'block-size');
    const med = (c: string, f: (t: Trial) => number) => summarize(trials.get(c)!.map(f));
    const rows: Row[] = configs.map((c) => {
      const amp = med(c, (t) => t.layerSpaceBytes / t.layerBytesWritten);
      const b = workloadStats('base', c, trials.get(c)!.map((t) => t.base));
      const l = workloadStats('layers', c, trials.get(c)!.map((t) => t.layers));
      return {
        'chunk size': c,
        'layer bytes written MiB': med(c, (t) => t.layerBytesWritten).median / MiB,
        'layer space used MiB': med(c, (t) => t.layerSpaceBytes).median / MiB,
        'CoW amplification': amp.median, 'amplification min': amp.min, 'amplification max': amp.max,
        'pool data used MiB': med(c, (t) => t.usedDataBytes).median / MiB,
        'host allocated MiB': med(c, (t) => t.hostAllocatedBytes).median / MiB,
        'metadata blocks': med(c, (t) => t.metadataBlocks).median,
        'base write MiB/s': b.mibPerSec.median, 'base MiB/s min': b.mibPerSec.min, 'base MiB/s max': b.mibPerSec.max,
        '4K layer write IOPS': l.iops.median, 'IOPS min': l.iops.min, 'IOPS max': l.iops.max,
        'p50 ms': l.p50Ms, 'p99 ms': l.p99Ms,
      };
    });
    const pick = (...ks: string[]) => rows.map((r) => Object.fromEntries(ks.map((k) => [k, r[k]])));
    const first = rows[0];
    const last = rows[rows.length - 1];
    return {
      params: { 'device size': p.size, 'image layers': p.layers, 'container layer': 1, 'share of 4K blocks each layer rewrites': p.share, repeat: ctx.repeat, quick: ctx.quick, backend: 'loop-lvm', zeroing: 'on' },
      method: [
        `Base device of ${p.size / MiB} MiB written with 1 MiB writes; then ${p.layers} image layers and one container layer, each a snapshot of the previous one with ${Math.round(p.size / 4096 * p.share)} random 4 KiB writes (the same offsets for every chunk size).`,
        'Copy-on-write amplification = (pool data used - base size) / bytes written in the layers: every first write to a shared chunk copies the whole chunk.',
        'Metadata blocks: the pool status\'s used metadata blocks (4 KiB each) after a commit. Host allocated: stat st_blocks of the data file.',
        'Repeats interleaved across chunk sizes; median with min and max; latency percentiles over every 4K write.',
      ],
      findings: [
        `Copy-on-write amplification grows from ${(first['CoW amplification'] as number).toFixed(1)}x at ${first['chunk size']} to ${(last['CoW amplification'] as number).toFixed(1)}x at ${last['chunk size']}: ${(first['layer space used MiB'] as number).toFixed(1)} MiB vs ${(last['layer space used MiB'] as number).toFixed(1)} MiB of layer space for ${(first['layer bytes written MiB'] as number).toFixed(2)} MiB written.`,
        `Metadata: ${first['metadata blocks']} blocks at ${first['chunk size']} vs ${last['metadata blocks']} at ${last['chunk size']} (fewer, larger mappings).`,
        `Base provisioning: ${(first['base write MiB/s'] as number).toFixed(0)} MiB/s at ${first['chunk size']} vs ${(last['base write MiB/s'] as number).toFixed(0)} MiB/s at ${last['chunk size']}; 4K layer writes ${(first['4K layer write IOPS'] as number).toFixed(0)} vs ${(last['4K layer write IOPS'] as number).toFixed(0)} IOPS (each first write copies a whole chunk).`,
      ],
      sections: [
        { title: 'Space: copy-on-write amplification', charts: [
          { id: 'amplification', title: 'Copy-on-write amplification (layer space / bytes written)', mark: 'bar', x: { field: 'chunk size', title: 'chunk size', type: 'ordinal' }, y: { field: 'CoW amplification', title: 'amplification (x)' }, range: { low: 'amplification min', high: 'amplification max' }, data: pick('chunk size', 'CoW amplification', 'amplification min', 'amplification max', 'layer bytes written MiB', 'layer space used MiB') },
          { id: 'space', title: 'Space used by the layers vs bytes written', mark: 'bar', x: { field: 'chunk size', title: 'chunk size', type: 'ordinal' }, y: { field: 'MiB', title: 'MiB' }, series: { field: 'measure', title: 'measure' }, data: rows.flatMap((r) => [{ 'chunk size': r['chunk size'], measure: 'bytes written', MiB: r['layer bytes written MiB'] }, { 'chunk size': r['chunk size'], measure: 'layer space used', MiB: r['layer space used MiB'] }, { 'chunk size': r['chunk size'], measure: 'host allocated (all)', MiB: r['host allocated MiB'] }]) },
        ] },
        { title: 'Metadata', charts: [
          { id: 'metadata', title: 'Metadata blocks used (4 KiB each)', mark: 'bar', x: { field: 'chunk size', title: 'chunk size', type: 'ordinal' }, y: { field: 'metadata blocks', title: 'metadata blocks' }, data: pick('chunk size', 'metadata blocks') },
        ] },
        { title: 'Throughput', charts: [
          { id: 'base-throughput', title: 'Base device provisioning, 1 MiB writes (median, bars: min..max)', mark: 'bar', x: { field: 'chunk size', title: 'chunk size', type: 'ordinal' }, y: { field: 'base write MiB/s', title: 'MiB/s' }, range: { low: 'base MiB/s min', high: 'base MiB/s max' }, data: pick('chunk size', 'base write MiB/s', 'base MiB/s min', 'base MiB/s max') },
          { id: 'layer-iops', title: '4 KiB writes on snapshot layers (median, bars: min..max)', mark: 'bar', x: { field: 'chunk size', title: 'chunk size', type: 'ordinal' }, y: { field: '4K layer write IOPS', title: 'IOPS' }, range: { low: 'IOPS min', high: 'IOPS max' }, data: pick('chunk size', '4K layer write IOPS', 'IOPS min', 'IOPS max', 'p50 ms', 'p99 ms') },
        ] },
      ],
    };
  },
};
