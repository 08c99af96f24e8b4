/**
 * report.md: readable on a code host. Charts are SVG files beside it
 * (`![title](chart-N.svg)`, N in the order of allCharts); each has its data table
 * under it. Pure: the caller writes the files.
 */
import { chartTable, machineTable, paramsTable, toolsTable } from './common';
import { allCharts, fmt, Report, Table } from './model';

const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function mdTable(t: Table): string {
  const head = `| ${t.columns.map(esc).join(' | ')} |\n| ${t.columns.map(() => '---').join(' | ')} |\n`;
  const body = t.rows.map((r) => `| ${r.map((c) => esc(fmt(c))).join(' | ')} |`).join('\n');
  return (t.title ? `*${t.title}*\n\n` : '') + head + body + '\n';
}

export function chartFileName(i: number): string {
  return `chart-${i + 1}.svg`;
}

export function reportMd(r: Report): string {
  const charts = allCharts(r);
  const out: string[] = [];
  out.push(`# ${r.title}\n`, `> ${r.question}\n`);
  if (r.findings.length) out.push('## Findings\n', r.findings.map((f) => `- ${f}`).join('\n') + '\n');
  if (r.skipped.length) out.push('## Skipped here\n', r.skipped.map((s) => `- **${s.part}**: ${s.reason}`).join('\n') + '\n');
  for (const s of r.sections) {
    out.push(`## ${s.title}\n`);
    for (const p of s.text ?? []) out.push(p + '\n');
    for (const c of s.charts ?? []) {
      out.push(`![${c.title}](${chartFileName(charts.indexOf(c))})\n`);
      if (c.note) out.push(`${c.note}\n`);
      out.push(mdTable(chartTable(c)));
    }
    for (const t of s.tables ?? []) out.push(mdTable(t));
  }
  out.push('## Method\n', r.method.map((m) => `- ${m}`).join('\n') + '\n');
  out.push('## Parameters\n', mdTable(paramsTable(r)));
  out.push('## Machine\n', mdTable(machineTable(r)));
  out.push('## Tools\n', mdTable(toolsTable(r)));
  return out.join('\n');
}
