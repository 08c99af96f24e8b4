/**
 * Benchmark entry point (`npm run bench` -> node dist/bench/run.js [suite ...]).
 *
 * Runs every suite in SUITES (or only those named on the command line), prints a table of
 * subject/baseline ratios and writes them to bench/results/summary.json. A run of some
 * suites replaces those suites' rows and keeps the others' from the last run, each suite
 * with the date, Node version, CPU and load average it was measured under. To add a suite,
 * export a BenchSuite from bench/<name>.bench.ts and append it to SUITES.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';
import { containerdSuite } from './containerd.bench';
import { hotSuite } from './hot.bench';
import { imageSuite } from './image.bench';
import { metadataSuite } from './metadata.bench';
import { nbdSuite } from './nbd.bench';
import { poolSuite } from './pool.bench';

/** Every suite `npm run bench` runs, in order. Extend here. */
export const SUITES: BenchSuite[] = [hotSuite, metadataSuite, poolSuite, nbdSuite, imageSuite, containerdSuite];

interface SuiteRun { date: string; node: string; cpu: string; cpus: number; loadAverage: [number, number] }
interface Summary { suites: Record<string, SuiteRun>; rows: Array<Record<string, unknown> & { suite: string }> }

/** The last summary, in either form (older ones had one date for the whole run). */
function readSummary(file: string): Summary {
  let old: { date?: string; node?: string; cpu?: string; cpus?: number; suites?: Record<string, SuiteRun>; rows?: Summary['rows'] };
  try { old = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return { suites: {}, rows: [] }; } // none yet: start afresh
  const rows = old.rows ?? [];
  if (old.suites) return { suites: old.suites, rows };
  const one: SuiteRun = { date: old.date ?? '?', node: old.node ?? '?', cpu: old.cpu ?? '?', cpus: old.cpus ?? 0, loadAverage: [NaN, NaN] };
  return { suites: Object.fromEntries([...new Set(rows.map((r) => r.suite))].map((k) => [k, one])), rows };
}

function fmtOps(n: number): string {
  if (!Number.isFinite(n)) return '-';
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M/s` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k/s` : `${n.toFixed(1)} /s`;
}

function table(rows: BenchRow[]): string {
  const head = ['suite', 'case', 'subject / baseline', 'subject', 'baseline', 'ratio', 'target', 'note'];
  const body = rows.map((r) => [
    r.suite,
    r.case,
    `${r.subject} / ${r.baseline}`,
    fmtOps(r.subjectOps),
    fmtOps(r.baselineOps),
    Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}x` : '-',
    r.target === undefined ? '' : `>= ${r.target}x ${Number.isFinite(r.ratio) ? (r.ratio >= r.target ? 'ok' : 'MISSED') : 'not run'}`,
    r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const suites = wanted.length ? SUITES.filter((s) => wanted.includes(s.name)) : SUITES;
  if (wanted.length && suites.length !== wanted.length) {
    throw new Error(`unknown suite in ${wanted.join(', ')}; known: ${SUITES.map((s) => s.name).join(', ')}`);
  }
  const rows: BenchRow[] = [];
  const runs: Record<string, SuiteRun> = {};
  for (const s of suites) {
    const load = os.loadavg()[0];
    const started = new Date().toISOString();
    rows.push(...(await s.run()));
    runs[s.name] = { date: started, node: process.version, cpu: os.cpus()[0]?.model ?? '?', cpus: os.cpus().length, loadAverage: [Number(load.toFixed(2)), Number(os.loadavg()[0].toFixed(2))] };
  }
  console.log(`\n${table(rows)}\n`);
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const previous = readSummary(path.join(RESULTS_DIR, 'summary.json'));
  const fresh = rows.map((r) => ({ ...r, ratio: Number.isFinite(r.ratio) ? Number(r.ratio.toFixed(3)) : null }));
  const order = SUITES.map((x) => x.name);
  const kept = previous.rows.filter((r) => !runs[r.suite]);
  const summary = {
    suites: { ...Object.fromEntries(Object.entries(previous.suites).filter(([k]) => !runs[k])), ...runs },
    rows: [...kept, ...fresh].sort((a, b) => order.indexOf(a.suite) - order.indexOf(b.suite)),
  };
  const file = path.join(RESULTS_DIR, 'summary.json');
  fs.writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
  console.log(`summary saved to ${path.relative(process.cwd(), file)}`);
  const missed = rows.filter((r) => r.target !== undefined && Number.isFinite(r.ratio) && r.ratio < r.target);
  if (missed.length) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
