/**
 * What a benchmark suite is, for bench/run.ts.
 *
 * Contract: a suite measures every subject against a baseline run in the same process on
 * the same input (ARCHITECTURE style rule 8: ratios, never bare absolute times) and
 * returns one BenchRow per comparison. It may save its raw results under bench/results/.
 */

import * as path from 'node:path';
import b from 'benny';
import type { Summary } from 'benny/lib/internal/common-types';

export interface BenchRow {
  suite: string;
  /** What was measured, e.g. 'bitmapFindFree 16 MiB, 99.9 % full'. */
  case: string;
  subject: string;
  baseline: string;
  subjectOps: number;
  baselineOps: number;
  /** subjectOps / baselineOps (> 1: the subject is faster). NaN when a side did not run. */
  ratio: number;
  /** The ratio the project expects to reach, when there is one. */
  target?: number;
  note?: string;
}

export interface BenchSuite {
  name: string;
  run(): Promise<BenchRow[]>;
}

/** bench/results at the package root (this file runs from dist/bench). */
export const RESULTS_DIR = path.resolve(__dirname, '../../bench/results');

/** Per-case time budget: enough for stable ratios, short enough to run everything often. */
export const CASE_OPTIONS = { maxTime: 1.5, minSamples: 8 };

/**
 * Run one benny suite of named cases, save its JSON as bench/results/<file>.json and
 * return ops/s by case name.
 */
export async function runCases(title: string, file: string, cases: Record<string, () => unknown>): Promise<Record<string, number>> {
  const summary: Summary = await b.suite(
    title,
    b.configure({ cases: CASE_OPTIONS, minDisplayPrecision: 2 }),
    ...Object.entries(cases).map(([name, fn]) => b.add(name, fn)),
    b.cycle(),
    b.complete(),
    b.save({ file, folder: RESULTS_DIR, format: 'json', details: false }),
  );
  return Object.fromEntries(summary.results.map((r) => [r.name, r.ops]));
}
