/**
 * Writing a report: report.json, report.md with chart-N.svg beside it, and a
 * self-contained report.html, all into `outDir` (created if missing).
 *
 * Contract: returns the paths written; the three files describe the same Report.
 */
import * as fs from 'fs';
import * as path from 'path';
import { renderSvg } from './charts';
import { reportHtml } from './html';
import { reportJson } from './json';
import { chartFileName, reportMd } from './md';
import { allCharts, Report } from './model';

export type { Report } from './model';

export interface WrittenReport {
  dir: string;
  json: string;
  md: string;
  html: string;
  charts: string[];
}

export async function writeReport(r: Report, outDir: string): Promise<WrittenReport> {
  fs.mkdirSync(outDir, { recursive: true });
  const svgs: string[] = [];
  const charts: string[] = [];
  for (const [i, c] of allCharts(r).entries()) {
    const svg = await renderSvg(c);
    svgs.push(svg);
    const p = path.join(outDir, chartFileName(i));
    fs.writeFileSync(p, svg);
    charts.push(p);
  }
  const json = path.join(outDir, 'report.json');
  const md = path.join(outDir, 'report.md');
  const html = path.join(outDir, 'report.html');
  fs.writeFileSync(json, reportJson(r));
  fs.writeFileSync(md, reportMd(r));
  fs.writeFileSync(html, reportHtml(r, svgs));
  return { dir: outDir, json, md, html, charts };
}
