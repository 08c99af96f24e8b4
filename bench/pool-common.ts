/**
 * Shared parts of the pool suite (pool.bench.ts and its pool-*.ts pieces): sizes and trial
 * counts, the raw-figures record written to bench/results/pool.json, queue-depth and
 * timing helpers, the alternating (best of N) and interleaved (best per piece) paired
 * measurements of a subject against its baseline, and the fully mapped device fixture
 * (a pool device and a plain file holding the same bytes) that the read, sharing-break and
 * depth cases use. Measures nothing itself.
 */

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from '../src/pool/pool';
import { pattern } from '../support/random';
import type { BenchRow } from './bench-suite';

export const SUITE = 'pool';
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const CHUNK = 64 * KiB;
export const BLOCK_SECTORS = CHUNK / 512;
export const TRIALS = 3;
/** Passes of the interleaved (paired) measurement used for warm reads. */
export const READ_PASSES = 9;

/** Size of the sequential-write and mapped-device fixtures (the issue asks 256 MiB - 1 GiB). */
export const SEQ_BYTES = 256 * MiB;

/** Raw measurements, saved with the rows in bench/results/pool.json. */
export const details: Record<string, unknown> = {};

// ------------------------------------------------------------------ helpers

/** Run `count` operations with at most `depth` in flight, issued in index order. */
export async function queue(count: number, depth: number, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(depth, count) }, worker));
}

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/**
 * `trials` rounds of subject and baseline, alternating which goes first so warm-up and
 * slow phases of a busy machine do not always favour one side. Seconds per round.
 */
export async function alternate(trials: number, subject: () => Promise<number>, baseline: () => Promise<number>): Promise<{ ours: number[]; base: number[] }> {
  const ours: number[] = [];
  const base: number[] = [];
  for (let t = 0; t < trials; t++) {
    if (t % 2 === 0) {
      base.push(await baseline());
      ours.push(await subject());
    } else {
      ours.push(await subject());
      base.push(await baseline());
    }
  }
  return { ours, base };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const sig4 = (x: number): number => Number(x.toPrecision(4));
export const mibps = (bytes: number, secs: number): number => sig4(bytes / MiB / secs);

export function row(caseName: string, subject: string, baseline: string, subjectOps: number, baselineOps: number, target?: number, note?: string): BenchRow {
  return { suite: SUITE, case: caseName, subject, baseline, subjectOps, baselineOps, ratio: subjectOps / baselineOps, target, note };
}

/** A loop-lvm pool on sparse files; the periodic commit stays on, as in real use. */
export function newPool(dir: string, dataSize: number, metadataSize = 256 * MiB): Pool {
  return Pool.create(dir, { dataSize, metadataSize, blockSize: BLOCK_SECTORS, mode: 'loop-lvm' });
}

/** A sparse file of `size` bytes (what the baseline writes into, like the pool's data file). */
export function sparseFile(file: string, size: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
}

/**
 * Paired measurement for warm reads, which are CPU-bound and so at the mercy of anything
 * else running on the machine: each pass walks the same work in `segments` short pieces
 * (a few ms each) and runs every piece for the subject and then for the baseline
 * (alternating who goes first), so both sides see the same background load. A side's
 * time is the sum over pieces of that piece's best time over all passes: best-of-N at
 * the grain of a piece, since a longer window rarely escapes other processes' time
 * slices. Per-pass sums are returned too (for the record).
 */
export async function interleaved(
  passes: number,
  segments: number,
  subject: (segment: number) => Promise<unknown>,
  baseline: (segment: number) => Promise<unknown>,
): Promise<{ ours: number; base: number; ratios: number[]; oursAll: number[]; baseAll: number[] }> {
  const oursAll: number[] = [];
  const baseAll: number[] = [];
  const oursBest = new Array<number>(segments).fill(Infinity);
  const baseBest = new Array<number>(segments).fill(Infinity);
  for (let p = 0; p < passes; p++) {
    let o = 0;
    let b = 0;
    for (let s = 0; s < segments; s++) {
      let to: number;
      let tb: number;
      if ((p + s) % 2 === 0) {
        to = await timed(() => subject(s));
        tb = await timed(() => baseline(s));
      } else {
        tb = await timed(() => baseline(s));
        to = await timed(() => subject(s));
      }
      o += to;
      b += tb;
      oursBest[s] = Math.min(oursBest[s], to);
      baseBest[s] = Math.min(baseBest[s], tb);
    }
    oursAll.push(o);
    baseAll.push(b);
  }
  const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0);
  return { ours: sum(oursBest), base: sum(baseBest), ratios: oursAll.map((o, i) => baseAll[i] / o), oursAll, baseAll };
}

// ------------------------------------------------------------------ fixture: a fully mapped device

export interface Mapped {
  pool: Pool;
  dev: number;
  file: string;
}

/** Pool with thin 1 fully written (SEQ_BYTES), and a plain file holding the same bytes. */
export async function mappedFixture(root: string, extraData: number): Promise<Mapped> {
  const dir = path.join(root, 'mapped-pool');
  const pool = newPool(dir, SEQ_BYTES + extraData);
  const dev = 1;
  await pool.createThin(dev, SEQ_BYTES);
  const file = path.join(root, 'mapped-file');
  sparseFile(file, SEQ_BYTES);
  const fh = await fsp.open(file, 'r+');
  for (let i = 0; i < SEQ_BYTES / CHUNK; i++) {
    const b = pattern(1000 + i, CHUNK);
    await pool.write(dev, i * CHUNK, b);
    await fh.write(b, 0, CHUNK, i * CHUNK);
  }
  await pool.flush();
  await fh.datasync();
  await fh.close();
  return { pool, dev, file };
}
