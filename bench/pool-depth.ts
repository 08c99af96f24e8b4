/**
 * Pool suite, target 5 of the pool-engine issue: 4 KiB random reads at snapshot depth 128
 * >= 0.9x the rate at depth 1 (a chain of snapshots of the mapped fixture, each with a few
 * writes of its own; the same offsets on both ends, warm, interleaved best-per-piece passes).
 * Contrast row without a target: a qcow2 backing chain of the same depth, depth 128 against
 * depth 1, read through qemu-io (skipped when qemu-img or qemu-io is missing).
 * Part of pool.bench.ts.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Rand, pattern } from '../support/random';
import type { BenchRow } from './bench-suite';
import { CHUNK, MiB, READ_PASSES, SEQ_BYTES, TRIALS, details, interleaved, queue, row, sig4, type Mapped } from './pool-common';

/** Random 4 KiB reads per pass in case 5. */
const DEPTH_READS = 4000;
const CHAIN_DEPTH = 128;

// ------------------------------------------------------------------ 5. random reads at snapshot depth

export async function depthReads(root: string, m: Mapped): Promise<BenchRow[]> {
  const rand = new Rand(5);
  const blocks = SEQ_BYTES / 4096;
  // A chain: each snapshot of the previous, each with a few 4 KiB writes of its own.
  const first = 1001;
  let prev = m.dev;
  const tBuild = performance.now();
  for (let d = 1; d <= CHAIN_DEPTH; d++) {
    const id = first + d - 1;
    await m.pool.createSnap(id, prev);
    for (let w = 0; w < 4; w++) await m.pool.write(id, rand.int(blocks) * 4096, pattern(7000 + d * 4 + w, 4096));
    prev = id;
  }
  await m.pool.flush();
  const buildSeconds = (performance.now() - tBuild) / 1000;
  const shallow = first;
  const deep = prev;
  const offsets = Array.from({ length: DEPTH_READS }, () => rand.int(blocks) * 4096);
  // Warm both devices' metadata paths.
  for (const id of [shallow, deep]) for (let i = 0; i < offsets.length; i += 8) await m.pool.read(id, offsets[i], 4096);
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  for (const depth of [1, 8]) {
    const per = 250;
    const r = await interleaved(
      READ_PASSES,
      offsets.length / per,
      (s) => queue(per, depth, (i) => m.pool.read(deep, offsets[s * per + i], 4096)),
      (s) => queue(per, depth, (i) => m.pool.read(shallow, offsets[s * per + i], 4096)),
    );
    raw[`qd${depth}`] = { depth1Seconds: r.baseAll.map(sig4), depthNSeconds: r.oursAll.map(sig4), passRatios: r.ratios.map(sig4) };
    rows.push(row(
      `4 KiB random reads at snapshot depth ${CHAIN_DEPTH} vs 1, QD${depth}`,
      `depth ${CHAIN_DEPTH}`, 'depth 1', offsets.length / r.ours, offsets.length / r.base, 0.9,
      `${offsets.length} reads, same offsets, warm; best per segment over ${READ_PASSES} interleaved passes (pass ratios ${sig4(Math.min(...r.ratios))}-${sig4(Math.max(...r.ratios))})`,
    ));
  }
  const qcow = qcowContrast(root);
  if (qcow) rows.push(qcow);
  details.depthReads = { chainDepth: CHAIN_DEPTH, writesPerSnapshot: 4, reads: offsets.length, chainBuildSeconds: sig4(buildSeconds), ...raw };
  return rows;
}

/**
 * Contrast only (no target): qcow2 backing chains make a read walk down the chain
 * until some layer holds the cluster. Same depth, same kind of reads, through
 * qemu-io (one process per run, so its start-up is in both sides and cancels
 * only roughly). Skipped when qemu-img or qemu-io is missing.
 */
function qcowContrast(root: string): BenchRow | undefined {
  const have = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!have('qemu-img') || !have('qemu-io')) {
    details.qcow2 = 'skipped: qemu-img or qemu-io not found';
    return undefined;
  }
  const dir = path.join(root, 'qcow');
  fs.mkdirSync(dir);
  const size = 64 * MiB;
  // Fixed-width names, so one layer's header can be cloned and its backing name patched.
  const name = (d: number): string => `l${String(d).padStart(3, '0')}.qcow2`;
  const img = (d: number): string => path.join(dir, name(d));
  const io = (file: string, cmds: string[]): string =>
    execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const t0 = performance.now();
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', img(0), String(size)]);
  io(img(0), [`write -P 0x5a 0 ${size}`]);
  // An empty layer made by qemu-img (-u: without opening its backing file), cloned for
  // every depth with the backing file name patched in place: 128 qemu-img runs under
  // load take longer than the measurement itself.
  const template = path.join(dir, 'template.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-o', 'cluster_size=65536', '-F', 'qcow2', '-b', name(0), template, String(size)]);
  const layer = fs.readFileSync(template);
  const at = layer.indexOf(name(0));
  if (at < 0 || layer.indexOf(name(0), at + 1) >= 0) throw new Error('qcow2 contrast: backing file name not found once in the template header');
  const rand = new Rand(9);
  const writes: string[] = [];
  const written = new Set<number>();
  for (let d = 1; d <= CHAIN_DEPTH; d++) {
    layer.write(name(d - 1), at, 'latin1');
    fs.writeFileSync(img(d), layer);
    // A few writes per layer, like our chain, all from one qemu-io with each layer opened
    // detached from its backing file (opening the chain below each one would make this
    // O(depth^2)); the rest of each written cluster then reads as zeros: fine for timing.
    writes.push('-c', `open json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: img(d) }, backing: null })}`);
    for (let w = 0; w < 4; w++) {
      const off = rand.int(size / 4096) * 4096;
      written.add(Math.floor(off / CHUNK));
      writes.push('-c', `write -P ${d & 0xff} ${off} 4096`);
    }
    writes.push('-c', 'close');
  }
  execFileSync('qemu-io', writes, { stdio: 'ignore' });
  const buildSeconds = (performance.now() - t0) / 1000;
  // The chain is whole: a cluster no layer wrote reads the base's bytes through all 128.
  let untouched = 0;
  while (written.has(untouched)) untouched++;
  const check = io(img(CHAIN_DEPTH), [`read -P 0x5a ${untouched * CHUNK} 4096`]);
  if (/fail/i.test(check)) throw new Error(`qcow2 contrast: the chain does not reach the base: ${check}`);
  const reads = Array.from({ length: 2000 }, () => `read ${rand.int(size / 4096) * 4096} 4096`);
  // qemu-io's start-up (opening the chain) differs with depth: time it per image and subtract.
  const run = (file: string, cmds: string[]): number => {
    const a = performance.now();
    io(file, cmds);
    return (performance.now() - a) / 1000;
  };
  const t1: number[] = [];
  const tN: number[] = [];
  const s1: number[] = [];
  const sN: number[] = [];
  for (let t = 0; t < TRIALS; t++) {
    s1.push(run(img(1), ['read 0 4096']));
    sN.push(run(img(CHAIN_DEPTH), ['read 0 4096']));
    t1.push(run(img(1), reads));
    tN.push(run(img(CHAIN_DEPTH), reads));
  }
  const o = reads.length / Math.max(1e-6, Math.min(...tN) - Math.min(...sN));
  const base = reads.length / Math.max(1e-6, Math.min(...t1) - Math.min(...s1));
  details.qcow2 = {
    depth: CHAIN_DEPTH, reads: reads.length, buildSeconds: sig4(buildSeconds), depth1Seconds: t1.map(sig4), depthNSeconds: tN.map(sig4),
    startupDepth1Seconds: s1.map(sig4), startupDepthNSeconds: sN.map(sig4),
  };
  return row(
    `contrast: qcow2 backing chain, 4 KiB random reads, depth ${CHAIN_DEPTH} vs 1`,
    `qcow2 depth ${CHAIN_DEPTH}`, 'qcow2 depth 1', o, base, undefined,
    `qemu-io, ${reads.length} reads each, open time subtracted per depth; contrast only, no target`,
  );
}
