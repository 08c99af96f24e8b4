/**
 * Shared parts of the metadata suite (metadata.bench.ts and its metadata-*.ts pieces): the
 * mapping count N and round count, the two mapping layouts (sequential, scattered), wall/CPU
 * stopwatches (ours: this process; theirs: waited-for children via /proc/self/stat), the
 * thin_restore baselines (thin-provisioning-tools 0.9.0 and 1.x) and the note formatting.
 * Measures nothing itself.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tools09, tools1x, toolsReason, type Tools } from '../support/oracle-tools';

export const SUITE = 'metadata';
export const N = Number(process.env.THINSIM_BENCH_MAPPINGS ?? 1_000_000);
export const ROUNDS = 3;
export const METADATA_BYTES = 256 << 20;
export const DATA_BLOCK_SIZE = 128;

export type Variant = 'sequential' | 'scattered';
export const VARIANTS: Variant[] = ['sequential', 'scattered'];

/** Keeps results observable so no engine can drop the calls (every piece adds to `keep.sink`). */
export const keep = { sink: 0 };

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** A prime stride coprime with N, so v -> v * STRIDE mod N is a permutation without runs. */
export const STRIDE = ((): number => {
  let s = 7919;
  while (gcd(s, N) !== 1) s += 2;
  return s;
})();

export function dataBlockOf(variant: Variant, v: number): number {
  return variant === 'sequential' ? v : (v * STRIDE) % N;
}

export function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Wall and CPU seconds of one timed piece of work. */
export interface Timing {
  wall: number;
  cpu: number;
}

/** Clock ticks per second of /proc/<pid>/stat times. */
const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** User + system seconds of this process's waited-for children (Linux); NaN where unknown. */
function childCpuSeconds(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[k - 3] is field k
    return (Number(f[13]) + Number(f[14])) / CLK_TCK; // cutime, cstime
  } catch {
    return NaN;
  }
}

/** Start timing; the returned function gives wall and CPU seconds since (children's CPU if asked). */
export function stopwatch(children = false): () => Timing {
  const t0 = process.hrtime.bigint();
  const c0 = children ? childCpuSeconds() : 0;
  const u0 = process.cpuUsage();
  return () => {
    const wall = seconds(t0);
    if (children) return { wall, cpu: childCpuSeconds() - c0 };
    const u = process.cpuUsage(u0);
    return { wall, cpu: (u.user + u.system) / 1e6 };
  };
}

export function sparseFile(file: string): void {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, '');
  fs.truncateSync(file, METADATA_BYTES);
}

/** 1000000 -> "1M", 100000 -> "100k". */
export function count(n: number): string {
  return n % 1e6 === 0 ? `${n / 1e6}M` : n % 1e3 === 0 ? `${n / 1e3}k` : String(n);
}

export function fmtRate(n: number): string {
  return `${(n / 1e6).toFixed(2)} M/s`;
}


export interface Baseline {
  label: string;
  version: string;
  tools: Tools | undefined;
  skip: string;
}

export function baselines(): Baseline[] {
  const t09 = tools09();
  const t1 = tools1x();
  return [
    { label: `thin_restore ${t09?.version ?? '0.9'}`, version: t09?.version ?? '', tools: t09, skip: t09 ? '' : toolsReason.tools09 },
    { label: `thin_restore ${t1?.version ?? '1.x'}`, version: t1?.version ?? '', tools: t1, skip: t1 ? '' : toolsReason.tools1x },
  ];
}

/** Fastest wall time and fastest CPU time over the rounds. */
export function best(ts: Timing[]): Timing {
  return ts.length ? { wall: Math.min(...ts.map((t) => t.wall)), cpu: Math.min(...ts.map((t) => t.cpu)) } : { wall: NaN, cpu: NaN };
}

export function fmtPair(ours: Timing, theirs: Timing): string {
  const cpuRatio = theirs.cpu > 0 ? `${(ours.cpu / theirs.cpu).toFixed(2)}x` : 'theirs under one clock tick';
  return `wall ${ours.wall.toFixed(2)} s vs ${theirs.wall.toFixed(2)} s; cpu ${ours.cpu.toFixed(2)} s vs ${theirs.cpu.toFixed(2)} s = ${cpuRatio}`;
}
