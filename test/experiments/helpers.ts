/** Shared by the experiment tests: a quick run into a temp dir, silent progress, the dir removed afterwards unless KEEP_REPORTS=1. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { runExperiment, RunResult } from '../../src/experiments';
import { silentProgress } from '../../src/experiments/runner';

export async function quickRun(t: TestContext, name: string, opts: { size?: number; repeat?: number } = {}): Promise<RunResult> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `thinsim-exp-${name}-`));
  if (process.env.KEEP_REPORTS !== '1') t.after(() => fs.rmSync(out, { recursive: true, force: true }));
  else t.diagnostic(`report kept in ${out}`);
  return runExperiment(name, { quick: true, out, progress: silentProgress, ...opts });
}

export function rows(r: RunResult, chartOrTable: string): Record<string, any>[] {
  for (const s of r.report.sections) {
    for (const c of s.charts ?? []) if (c.id === chartOrTable) return c.data as Record<string, any>[];
    for (const tb of s.tables ?? []) if (tb.title === chartOrTable) return tb.rows.map((row) => Object.fromEntries(tb.columns.map((k, i) => [k, row[i]])));
  }
  throw new Error(`no chart or table ${chartOrTable}`);
}

export const MiB = 2 ** 20;
