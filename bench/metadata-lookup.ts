/**
 * Metadata suite, target 1: lookups of mapped blocks from a warm cache, at least 1 M/s.
 * Random `md.lookup(0, v)` calls on a committed device holding N sequential mappings,
 * against a baseline of the same keys looked up in a JS Map holding the same mappings,
 * measured in the same run. The 1 M/s floor is absolute (the number); the row's
 * ratio is to the Map and the floor's verdict goes in its note. Part of metadata.bench.ts.
 */

import type { ThinMetadata } from '../src/thin/metadata';
import type { BenchRow } from './bench-suite';
import { N, ROUNDS, SUITE, count, dataBlockOf, fmtRate, keep, stopwatch, type Timing } from './metadata-common';

const LOOKUP_FLOOR = 1_000_000;

/** N random keys in [0, N) from a fixed LCG, the same for subject and baseline. */
function randomKeys(count: number): Uint32Array {
  const keys = new Uint32Array(count);
  let s = 12345;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    keys[i] = s % N;
  }
  return keys;
}

/** Lookups per wall and per CPU second of `fn` over `keys`, repeating whole passes for at least `minSeconds`. */
function lookupRate(keys: Uint32Array, fn: (k: number) => number, minSeconds: number): Timing {
  let done = 0;
  const stop = stopwatch();
  let t: Timing;
  do {
    let x = 0;
    for (let i = 0; i < keys.length; i++) x += fn(keys[i]);
    keep.sink += x;
    done += keys.length;
    t = stop();
  } while (t.wall < minSeconds);
  return { wall: done / t.wall, cpu: done / t.cpu };
}

export interface LookupResult {
  keys: number;
  /** Lookups per wall second and per CPU second, each round. */
  thinsimRates: Timing[];
  mapRates: Timing[];
  /** Best per wall second. */
  thinsim: number;
  map: number;
  ratio: number;
  /** Best per CPU second. */
  thinsimPerCpuSecond: number;
  mapPerCpuSecond: number;
  floor: number;
  met: boolean;
}

export function lookupBench(md: ThinMetadata): LookupResult {
  const keys = randomKeys(Math.min(N, 200_000));
  for (const k of keys.subarray(0, 1000)) {
    const m = md.lookup(0, k);
    if (!m || m.block !== dataBlockOf('sequential', k)) throw new Error(`lookup(0, ${k}) gave ${JSON.stringify(m)}, expected data block ${k}`);
  }
  const map = new Map<number, { block: number; time: number }>();
  for (const [v, bt] of md.mappings(0)) map.set(v, bt);
  if (map.size !== N) throw new Error(`device 0 iterates ${map.size} mappings, expected ${N}`);
  const ours = (k: number): number => md.lookup(0, k)!.block;
  const theirs = (k: number): number => map.get(k)!.block;
  // Warm the cache and the JIT on both sides.
  lookupRate(keys, ours, 0);
  lookupRate(keys, theirs, 0.1);
  const thinsimRates: Timing[] = [];
  const mapRates: Timing[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    thinsimRates.push(lookupRate(keys, ours, 0.5));
    mapRates.push(lookupRate(keys, theirs, 0.25));
  }
  const thinsim = Math.max(...thinsimRates.map((t) => t.wall));
  const mapBest = Math.max(...mapRates.map((t) => t.wall));
  return {
    keys: keys.length, thinsimRates, mapRates, thinsim, map: mapBest, ratio: thinsim / mapBest,
    thinsimPerCpuSecond: Math.max(...thinsimRates.map((t) => t.cpu)), mapPerCpuSecond: Math.max(...mapRates.map((t) => t.cpu)),
    floor: LOOKUP_FLOOR, met: thinsim >= LOOKUP_FLOOR,
  };
}


/** The lookup row of the table. */
export function lookupRow(lk: LookupResult): BenchRow {
  return {
    suite: SUITE,
    case: `lookup, ${count(N)} mappings, warm cache, random keys`,
    subject: 'thinsim md.lookup',
    baseline: 'JS Map.get',
    subjectOps: lk.thinsim,
    baselineOps: lk.map,
    ratio: lk.ratio,
    note: `floor 1 M/s: ${lk.met ? 'met' : 'MISSED'} (${fmtRate(lk.thinsim)}; per cpu-second ${fmtRate(lk.thinsimPerCpuSecond)} vs Map ${fmtRate(lk.mapPerCpuSecond)})`,
  };
}
