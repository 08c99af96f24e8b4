/**
 * Benchmark entry point (`npm run bench` -> node dist/bench/run.js [suite ...]).
 *
 * Runs every suite in SUITES (or only those named on the command line), prints a table of
 * subject/baseline ratios and writes them to bench/results/summary.json. To add a suite,
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
  for (const s of suites) rows.push(...(await s.run()));
  console.log(`\n${table(rows)}\n`);
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const summary = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    rows: rows.map((r) => ({ ...r, ratio: Number.isFinite(r.ratio) ? Number(r.ratio.toFixed(3)) : null })),
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
