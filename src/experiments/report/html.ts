/**
 * report.html: one self-contained file (inline CSS and SVG; no script, no fonts,
 * no network). Each chart is a <figure class="chart"> carrying data-series (the
 * number of series), data-x-title and data-y-title, so a test can check the
 * rendered SVG against what the chart should show. Pure: SVGs come in rendered.
 */
import { chartTable, machineTable, paramsTable, toolsTable } from './common';
import { allCharts, fmt, Report, seriesOf, Table } from './model';

export const escHtml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function htmlTable(t: Table, cls = 'data'): string {
  const head = `<thead><tr>${t.columns.map((c) => `<th>${escHtml(c)}</th>`).join('')}</tr></thead>`;
  const body = t.rows.map((r) => `<tr>${r.map((c) => `<td${typeof c === 'number' ? ' class="num"' : ''}>${escHtml(fmt(c))}</td>`).join('')}</tr>`).join('');
  return `${t.title ? `<p class="caption">${escHtml(t.title)}</p>` : ''}<table class="${cls}">${head}<tbody>${body}</tbody></table>`;
}

const CSS = `
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
blockquote{color:#555;border-left:4px solid #4c78a8;margin:0;padding:.2em 1em;background:#f6f8fb}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em} th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure.chart{margin:1em 0 0;padding:0} figure.chart svg{max-width:100%;height:auto}
.caption{font-size:.85em;color:#555;margin:.2em 0} .skip{color:#8a5a00} ul.findings li{margin:.3em 0}
details{margin:.3em 0 1em} summary{cursor:pointer;color:#4c78a8}
`;

export function reportHtml(r: Report, svgs: string[]): string {
  const charts = allCharts(r);
  const parts: string[] = [];
  parts.push(`<h1>${escHtml(r.title)}</h1><blockquote>${escHtml(r.question)}</blockquote>`);
  parts.push(`<p class="caption">${escHtml(r.date)} · ${escHtml(r.machine.cpuModel)}, ${r.machine.cores} cores · kernel ${escHtml(r.machine.kernel)} · ${escHtml(r.machine.filesystem)}</p>`);
  if (r.findings.length) parts.push(`<h2>Findings</h2><ul class="findings">${r.findings.map((f) => `<li>${escHtml(f)}</li>`).join('')}</ul>`);
  if (r.skipped.length) parts.push(`<h2>Skipped here</h2><ul>${r.skipped.map((s) => `<li class="skip"><b>${escHtml(s.part)}</b>: ${escHtml(s.reason)}</li>`).join('')}</ul>`);
  for (const s of r.sections) {
    parts.push(`<h2>${escHtml(s.title)}</h2>`);
    for (const p of s.text ?? []) parts.push(`<p>${escHtml(p)}</p>`);
    for (const c of s.charts ?? []) {
      const i = charts.indexOf(c);
      parts.push(`<figure class="chart" id="${escHtml(c.id)}" data-series="${seriesOf(c).length}" data-x-title="${escHtml(c.x.title)}" data-y-title="${escHtml(c.y.title)}">${svgs[i]}</figure>`);
      if (c.note) parts.push(`<p class="caption">${escHtml(c.note)}</p>`);
      parts.push(htmlTable(chartTable(c)));
    }
    for (const t of s.tables ?? []) parts.push(htmlTable(t));
  }
  parts.push(`<h2>Method</h2><ul>${r.method.map((m) => `<li>${escHtml(m)}</li>`).join('')}</ul>`);
  parts.push(`<h2>Parameters</h2>${htmlTable(paramsTable(r))}`);
  parts.push(`<h2>Machine</h2>${htmlTable(machineTable(r), 'meta')}`);
  parts.push(`<h2>Tools</h2>${htmlTable(toolsTable(r))}`);
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${escHtml(r.title)}</title><style>${CSS}</style></head><body>\n${parts.join('\n')}\n</body></html>\n`;
}
