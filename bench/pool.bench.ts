/**
 * Pool-engine benchmarks: the data path and snapshot operations of src/pool against
 * plain file I/O (or against the pool itself at a smaller scale) in the same process,
 * on temp dirs in one parent under os.tmpdir(), so both sides share a filesystem.
 *
 * Targets (pool-engine issue), each a ratio against a baseline measured in this run:
 *  1. sequential 64 KiB writes provisioning a fresh thin device, final flush() included:
 *     >= 0.7x a plain sequential write of the same bytes to a sparse file (fs.promises,
 *     same queue depth, fdatasync included); queue depth 1 and 8.
 *  2. 4 KiB random writes to a snapshot, each breaking sharing of a 64 KiB chunk: IOPS
 *     and the ratio to plain 4 KiB random writes on a file (same count, same offsets).
 *     No target: a sharing break copies 64 KiB for every 4 KiB written.
 *  3. sequential read of a fully mapped device: >= 0.8x a plain read of a file of the
 *     same size. Both warm (page cache; nothing dropped), 64 KiB and 1 MiB requests.
 *  4. create_snap of a device with 64 GiB mapped within 1.5x the time of one with 1 GiB
 *     mapped (median of several snapshots each; metadata built without data I/O).
 *  5. 4 KiB random reads at snapshot depth 128 >= 0.9x the rate at depth 1. Optional
 *     contrast: a qcow2 backing chain of the same depth read through qemu-io.
 * Method: I/O-bound cases (writes with their final sync) run best of 3 (sequential
 * writes: 5), alternating which side goes first. Warm reads are CPU-bound, so other
 * processes' time slices dominate their noise: subject and baseline alternate in pieces
 * of 1-5 ms over 9 passes and each side's time is the sum of its best time per piece
 * (see interleaved()). create_snap compares medians of interleaved snapshots. Raw
 * numbers, including the per-pass ratios, go to bench/results/pool.json.
 * THINSIM_POOL_BENCH=write,read,depth,cow,snap runs a subset.
 *
 * This file runs the suite and writes pool.json; the cases are in pool-data-path.ts (1, 3),
 * pool-snapshots.ts (2, 4) and pool-depth.ts (5), with the shared sizes, paired-measurement
 * helpers and the mapped-device fixture in pool-common.ts.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';
import { SEQ_BYTES, SUITE, details, mappedFixture, sig4, type Mapped } from './pool-common';
import { seqRead, seqWrite } from './pool-data-path';
import { depthReads } from './pool-depth';
import { cowWrites, createSnapScaling } from './pool-snapshots';

export async function runPoolBench(): Promise<BenchRow[]> {
  const only = process.env.THINSIM_POOL_BENCH?.split(',').filter(Boolean);
  const want = (k: string): boolean => !only || only.includes(k);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-pool-bench-'));
  const rows: BenchRow[] = [];
  const t0 = performance.now();
  const step = async (name: string, fn: () => Promise<BenchRow[]>): Promise<void> => {
    const s = performance.now();
    rows.push(...(await fn()));
    console.log(`pool: ${name} done in ${((performance.now() - s) / 1000).toFixed(1)} s`);
  };
  try {
    if (want('write')) await step('sequential writes', () => seqWrite(root));
    if (want('read') || want('depth') || want('cow')) {
      let m: Mapped | undefined;
      await step('mapped fixture', async () => { m = await mappedFixture(root, 4 * SEQ_BYTES); return []; });
      try {
        if (want('read')) await step('sequential reads', () => seqRead(m!));
        // Sharing breaks before the chain: their snapshots are deleted again, so the
        // origin is shared by nothing else while they run.
        if (want('cow')) await step('sharing breaks', () => cowWrites(m!));
        if (want('depth')) await step('snapshot depth reads', () => depthReads(root, m!));
      } finally {
        await m!.pool.close();
      }
    }
    if (want('snap')) await step('create_snap scaling', () => createSnapScaling(root));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    tmpdir: os.tmpdir(),
    seconds: sig4((performance.now() - t0) / 1000),
    rows: rows.map((r) => ({ ...r, ratio: Number.isFinite(r.ratio) ? sig4(r.ratio) : null, met: r.target === undefined ? null : r.ratio >= r.target })),
    details,
  };
  fs.writeFileSync(path.join(RESULTS_DIR, 'pool.json'), JSON.stringify(out, null, 2) + '\n');
  return rows;
}

export const poolSuite: BenchSuite = { name: SUITE, run: runPoolBench };
