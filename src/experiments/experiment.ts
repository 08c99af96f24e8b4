/**
 * What every experiment is: a name, the sizing question it answers, and a `run`
 * that measures and returns a Report (report/model.ts). The registry (index.ts)
 * lists them; the CLI verb only parses arguments and calls `runExperiment`.
 *
 * Contract:
 * - `run` works in `ctx.workDir` (a fresh directory it may fill) and leaves no
 *   pool, loop device or process behind, even when it fails.
 * - A part that cannot run here (needs root, a missing tool) is reported in
 *   `skipped` with the reason and has no figures; the rest still runs.
 * - `--quick` settings finish in seconds; defaults give steadier numbers.
 */
import { ThinError } from '../errors';
import { machineInfo, toolVersions } from './host';
import { rendererVersions } from './report/charts';
import type { Report } from './report/model';
import type { Progress } from './runner';

export interface ExperimentOptions {
  /** The experiment's main size in bytes (what it means is the experiment's to say). */
  size?: number;
  repeat?: number;
  quick?: boolean;
}

export interface ExperimentContext {
  size: number;
  repeat: number;
  quick: boolean;
  /** Scratch space for pools and images; removed by the caller afterwards. */
  workDir: string;
  progress: Progress;
  /** Record a part that could not run here (and tell the user now). */
  skip(part: string, reason: string): void;
  skipped: { part: string; reason: string }[];
}

export interface Experiment {
  name: string;
  title: string;
  question: string;
  /** What --size sizes, in a phrase. */
  sizeMeans: string;
  /** Defaults, and the --quick settings. */
  defaults: { size: number; repeat: number };
  quick: { size: number; repeat: number };
  /** Tools whose versions the report states. */
  tools: string[];
  /** Undefined when it can run; otherwise why not (the CLI exits non-zero with it). */
  unavailable?: string;
  run(ctx: ExperimentContext): Promise<Omit<Report, 'experiment' | 'title' | 'question' | 'date' | 'durationSeconds' | 'machine' | 'tools' | 'skipped'>>;
}

/** Wrap an experiment's own figures in the report header every report has. */
export async function runWithHeader(e: Experiment, ctx: ExperimentContext, reportDir: string): Promise<Report> {
  const start = Date.now();
  const date = new Date(start).toISOString();
  const body = await e.run(ctx);
  return {
    experiment: e.name, title: e.title, question: e.question, date,
    durationSeconds: (Date.now() - start) / 1000,
    machine: { ...machineInfo(ctx.workDir), workDir: reportDir },
    tools: { ...toolVersions(e.tools), ...rendererVersions() },
    skipped: ctx.skipped,
    ...body,
  };
}

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/**
 * E_INVALID unless the experiment's `--size` is a whole number of MiB, at least
 * `minMiB`; `means` (what the size is, when it is not obvious) goes into the message.
 */
export function requireSizeInMiB(size: number, minMiB: number, means?: string): void {
  if (size % MiB === 0 && size >= minMiB * MiB) return;
  throw new ThinError('E_INVALID', `--size${means ? ` (${means})` : ''} must be a whole number of MiB, at least ${minMiB}M`);
}
