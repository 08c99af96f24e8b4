#!/usr/bin/env node
/**
 * Print bench/results/summary.json (the last `npm run bench`) as the README's markdown table.
 * Ratios are subject/baseline throughput; rows whose target is about time or space are shown
 * the way round the issue words them ("0.5x the time", "<= 3x the time").
 * Usage: node scripts/bench-table.js [summary.json]
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const file = process.argv[2] ?? path.join(__dirname, '..', 'bench', 'results', 'summary.json');
const summary = JSON.parse(fs.readFileSync(file, 'utf8'));

function fmt(x, digits) {
  return Number(x.toFixed(digits)).toString();
}

/** [ratio cell, target cell] for one row. */
function cells(r) {
  if (r.ratio === null || r.ratio === undefined) return ['not run', r.target === undefined ? '—' : 'not run'];
  const c = r.case;
  if (c.startsWith('insert ') || c.startsWith('create_snap') || c.startsWith('ls ') || c.startsWith('dump ')) {
    // Time: ours / theirs is 1 / (throughput ratio).
    return [`${(1 / r.ratio).toFixed(2)}x the time`, r.target ? `≤ ${fmt(1 / r.target, 1)}x the time` : '—'];
  }
  if (c.startsWith('metadata blocks')) {
    return [`${(1 / r.ratio).toFixed(2)}x the blocks`, r.target ? `≤ ${fmt(1 / r.target, 1)}x the blocks` : '—'];
  }
  if (c.startsWith('lookup')) {
    return [`${fmt(r.ratio, 3)}x (${fmt(r.subjectOps / 1e6, 2)} M lookups/s)`, '≥ 1 M lookups/s'];
  }
  const nbd = /IOPS median (\d+) \[(\d+)-(\d+)\] vs (\d+) \[(\d+)-(\d+)\]/.exec(r.note ?? '');
  if (nbd) {
    const [, o, omin, omax, b, bmin, bmax] = nbd;
    return [`${fmt(r.ratio, 2)}x (${o} [${omin}–${omax}] vs ${b} [${bmin}–${bmax}] IOPS)`, r.target === undefined ? 'report only' : `≥ ${fmt(r.target, 2)}x`];
  }
  const iops = /(\d+) IOPS incl\. flush/.exec(r.note ?? '');
  if (iops) return [`${fmt(r.ratio, 3)}x (${iops[1]} IOPS incl. flush)`, 'report only'];
  return [`${fmt(r.ratio, 3)}x`, r.target === undefined ? '—' : `≥ ${fmt(r.target, 2)}x`];
}

// Each suite's conditions: when it ran, on what, and the load average before and after.
const suites = summary.suites ?? { all: { date: summary.date, node: summary.node, cpus: summary.cpus, cpu: summary.cpu } };
const when = (name) => {
  const s = suites[name] ?? suites.all;
  if (!s) return '';
  const load = s.loadAverage && Number.isFinite(s.loadAverage[0]) ? `, load ${s.loadAverage[0]}→${s.loadAverage[1]}` : '';
  return `${s.date.slice(0, 16).replace('T', ' ')} UTC${load}`;
};
const lines = [
  `<!-- ${Object.entries(suites).map(([k, s]) => `${k}: ${s.date}, Node ${s.node}, ${s.cpus} x ${s.cpu}`).join('; ')} -->`,
  '| suite (measured) | case | measured against | ratio | target |',
  '| --- | --- | --- | --- | --- |',
];
for (const r of summary.rows) {
  const [ratio, target] = cells(r);
  lines.push(`| ${r.suite} (${when(r.suite)}) | ${r.case} | ${r.subject} / ${r.baseline} | ${ratio} | ${target} |`);
}
console.log(lines.join('\n'));
