/**
 * The experiments registry and the one call the CLI makes: run an experiment by
 * name, write its report (json, md, html) and hand back where it went.
 *
 * Contract:
 * - `listExperiments()` names every experiment, including the ones that cannot run
 *   yet (with the reason); `runExperiment` refuses those with E_UNSUPPORTED.
 * - The scratch directory (pools, images, loop devices) lives under the out dir, so
 *   the report's filesystem is the one measured, and is removed afterwards.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ThinError } from '../errors';
import { blockSize } from './block-size';
import { driverCompare } from './driver-compare';
import { driverCompareContainerd } from './dc-containerd';
import { Experiment, ExperimentContext, runWithHeader } from './experiment';
import { layerDepth } from './layer-depth';
import { loopVsDirect } from './loop-vs-direct';
import { metadataSize } from './metadata-size';
import { overcommit } from './overcommit';
import { writeReport, WrittenReport } from './report';
import type { Report } from './report/model';
import { consoleProgress, Progress } from './runner';

export const EXPERIMENTS: Experiment[] = [loopVsDirect, blockSize, layerDepth, overcommit, metadataSize, driverCompare, driverCompareContainerd];

export interface ExperimentListing {
  name: string;
  title: string;
  question: string;
  available: boolean;
  reason?: string;
  /** What --size sizes, with the default and the --quick size in bytes. */
  size?: { means: string; default: number; quick: number };
  repeat?: { default: number; quick: number };
}

export function listExperiments(): ExperimentListing[] {
  return EXPERIMENTS.map((e) => ({ name: e.name, title: e.title, question: e.question, available: !e.unavailable, reason: e.unavailable,
    ...(e.unavailable ? {} : { size: { means: e.sizeMeans, default: e.defaults.size, quick: e.quick.size }, repeat: { default: e.defaults.repeat, quick: e.quick.repeat } }) }));
}

export interface RunOptions {
  size?: number;
  repeat?: number;
  quick?: boolean;
  /** Default: ./thinsim-experiment-NAME-<date> under the cwd. */
  out?: string;
  progress?: Progress;
}

export interface RunResult {
  report: Report;
  written: WrittenReport;
}

export async function runExperiment(name: string, opts: RunOptions = {}): Promise<RunResult> {
  const e = EXPERIMENTS.find((x) => x.name === name);
  if (!e) throw new ThinError('E_INVALID', `no experiment "${name}"; "thinsim experiment list" names them: ${EXPERIMENTS.map((x) => x.name).join(', ')}`);
  if (e.unavailable) throw new ThinError('E_UNSUPPORTED', `experiment ${name} cannot run yet: ${e.unavailable}`);
  const base = opts.quick ? e.quick : e.defaults;
  const size = opts.size ?? base.size;
  const repeat = opts.repeat ?? base.repeat;
  if (!(Number.isSafeInteger(repeat) && repeat >= 1)) throw new ThinError('E_INVALID', `--repeat must be a whole number of at least 1, not ${repeat}`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
  const out = path.resolve(opts.out ?? `thinsim-experiment-${name}-${stamp}`);
  const created = !fs.existsSync(out);
  fs.mkdirSync(out, { recursive: true });
  const workDir = fs.mkdtempSync(path.join(out, '.work-'));
  const progress = opts.progress ?? consoleProgress();
  const skipped: { part: string; reason: string }[] = [];
  const ctx: ExperimentContext = {
    size, repeat, quick: !!opts.quick, workDir, progress, skipped,
    skip(part, reason) { skipped.push({ part, reason }); progress.note(`skipped: ${part}: ${reason}`); },
  };
  try {
    const report = await runWithHeader(e, ctx, out);
    const written = await writeReport(report, out);
    return { report, written };
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
    // A run that failed before writing anything leaves no empty directory behind.
    if (created && fs.readdirSync(out).length === 0) fs.rmdirSync(out);
  }
}
