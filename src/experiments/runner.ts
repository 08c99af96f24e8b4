/**
 * The experiment runner: the same workload on every configuration, repeats
 * interleaved (A B A B ...) so a drift of the machine (page cache, other tenants,
 * thermal) spreads over every configuration instead of landing on one; statistics
 * (median with min and max over repeats, latency percentiles over every operation);
 * progress (a bar on a terminal, plain lines otherwise).
 *
 * Contract:
 * - `interleave(configs, repeat, trial)` calls `trial(config, rep)` in the order
 *   rep 0: A B C, rep 1: A B C, ...; one call at a time; every result is kept.
 *   A trial that throws stops the run (the error names the configuration and repeat).
 * - `timeOps` measures one operation at a time (queue depth 1) with
 *   performance.now(), so each latency is one operation's.
 * - Statistics never invent a value: an empty sample gives NaN, which reports print
 *   as "n/a".
 * - A Progress prints to stderr only, so `--json` output on stdout stays clean.
 */
import { SingleBar, Presets } from 'cli-progress';
import { Mulberry32 as Rng } from '../random';

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(values: number[]): Summary {
  if (values.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const s = [...values].sort((a, b) => a - b);
  return { median: percentileSorted(s, 50), min: s[0], max: s[s.length - 1], n: s.length };
}

/** Percentile by linear interpolation between closest ranks (numpy's default). `sorted` ascending. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

export function percentile(values: ArrayLike<number>, p: number): number {
  return percentileSorted(Float64Array.from(values).sort(), p);
}

/** One timed run of a workload: bytes moved, wall time, and each operation's latency (ms). */
export interface OpsResult {
  ops: number;
  bytes: number;
  seconds: number;
  latenciesMs: number[];
}

/** Run `count` operations one after another, timing each. */
export async function timeOps(count: number, bytesPerOp: number, op: (i: number) => Promise<unknown>): Promise<OpsResult> {
  const latenciesMs = new Array<number>(count);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    await op(i);
    latenciesMs[i] = performance.now() - s;
  }
  const seconds = (performance.now() - t0) / 1000;
  return { ops: count, bytes: count * bytesPerOp, seconds, latenciesMs };
}

/** A workload's figures over its repeats: throughput median/min/max, latency p50/p99 over every operation. */
export interface WorkloadStats {
  workload: string;
  config: string;
  repeats: number;
  mibPerSec: Summary;
  iops: Summary;
  p50Ms: number;
  p99Ms: number;
}

export function workloadStats(workload: string, config: string, runs: OpsResult[]): WorkloadStats {
  const all: number[] = [];
  for (const r of runs) for (const l of r.latenciesMs) all.push(l);
  const sorted = Float64Array.from(all).sort();
  return {
    workload, config, repeats: runs.length,
    mibPerSec: summarize(runs.map((r) => r.bytes / 2 ** 20 / r.seconds)),
    iops: summarize(runs.map((r) => r.ops / r.seconds)),
    p50Ms: percentileSorted(sorted, 50),
    p99Ms: percentileSorted(sorted, 99),
  };
}

// ------------------------------------------------------------------ progress

export interface Progress {
  /** `total` steps are coming. */
  start(total: number, what: string): void;
  /** One step done; `label` says which. */
  tick(label: string): void;
  /** A line worth keeping (a skip, a finding); never lost under the bar. */
  note(line: string): void;
  stop(): void;
}

/** A cli-progress bar on a terminal; plain "[3/12] label" lines otherwise. */
export function consoleProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY) {
    let bar: SingleBar | undefined;
    let done = 0;
    return {
      start(total, what) {
        bar?.stop();
        done = 0;
        bar = new SingleBar({ format: `${what} [{bar}] {value}/{total} {label} | {duration_formatted}`, stream, hideCursor: true, clearOnComplete: false }, Presets.shades_classic);
        bar.start(total, 0, { label: '' });
      },
      tick(label) { done++; bar?.update(done, { label }); },
      note(line) {
        // Writing above a live bar: clear its line, print, let the next update redraw it.
        stream.write(`\r\x1b[K${line}\n`);
      },
      stop() { bar?.stop(); bar = undefined; },
    };
  }
  let total = 0;
  let done = 0;
  let what = '';
  return {
    start(t, w) { total = t; done = 0; what = w; },
    tick(label) { done++; stream.write(`${what} [${done}/${total}] ${label}\n`); },
    note(line) { stream.write(line + '\n'); },
    stop() { /* nothing to tidy */ },
  };
}

export const silentProgress: Progress = { start() {}, tick() {}, note() {}, stop() {} };

/**
 * Interleaved repeats: for rep in 0..repeat-1, for config in configs: trial.
 * Results come back grouped by configuration, in repeat order.
 */
export async function interleave<C extends string, R>(
  configs: readonly C[], repeat: number, trial: (config: C, rep: number) => Promise<R>,
  progress: Progress = silentProgress, what = 'trials',
): Promise<Map<C, R[]>> {
  const out = new Map<C, R[]>(configs.map((c) => [c, []]));
  progress.start(configs.length * repeat, what);
  try {
    for (let rep = 0; rep < repeat; rep++) {
      for (const c of configs) {
        let r: R;
        try {
          r = await trial(c, rep);
        } catch (e) {
          (e as Error).message = `${what}: ${c}, repeat ${rep + 1}: ${(e as Error).message}`;
          throw e;
        }
        out.get(c)!.push(r);
        progress.tick(`${c} #${rep + 1}`);
      }
    }
  } finally {
    progress.stop();
  }
  return out;
}

/** The project's PRNG, so a workload's offsets are the same on every configuration. */
export { Rng };

/** Bytes that do not compress or dedupe to nothing: a pattern per seed. */
export function payload(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  const r = new Rng(seed);
  for (let i = 0; i + 4 <= len; i += 4) b.writeUInt32LE((r.next() * 4294967296) >>> 0, i);
  for (let i = len - (len % 4); i < len; i++) b[i] = r.int(256);
  return b;
}
