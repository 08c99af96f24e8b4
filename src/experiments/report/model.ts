/**
 * What an experiment hands to the report writers: plain data, no I/O, no rendering.
 *
 * Contract:
 * - Every chart carries its own raw rows (`data`): the writers print them as a table
 *   under the chart, so every plotted point can be read as a number.
 * - `skipped` lists each part that could not run here with the reason (no root, a
 *   missing tool); a skipped part has no figures, never placeholder ones.
 * - Values are finite numbers or strings; NaN/undefined mean "not measured" and
 *   print as "n/a".
 */
import type { MachineInfo } from '../host';

export type Cell = string | number | boolean | null | undefined;
export type Row = Record<string, Cell>;

export interface Axis {
  field: string;
  title: string;
  type?: 'quantitative' | 'ordinal' | 'nominal';
  log?: boolean;
}

export interface ChartSpec {
  id: string;
  title: string;
  mark: 'bar' | 'line' | 'point';
  x: Axis;
  y: Axis;
  /** A field whose distinct values are the chart's series (colour, legend). */
  series?: { field: string; title: string };
  /** Fields holding the low and high end of an error bar (min and max over repeats). */
  range?: { low: string; high: string };
  data: Row[];
  note?: string;
}

export interface Table {
  title?: string;
  columns: string[];
  rows: Cell[][];
}

export interface Section {
  title: string;
  text?: string[];
  charts?: ChartSpec[];
  tables?: Table[];
}

export interface Report {
  experiment: string;
  title: string;
  /** The sizing question the experiment answers. */
  question: string;
  date: string;
  durationSeconds: number;
  params: Record<string, Cell>;
  machine: MachineInfo;
  tools: Record<string, string>;
  /** How the numbers were taken (cache dropping, timing, which tool). */
  method: string[];
  findings: string[];
  skipped: { part: string; reason: string }[];
  sections: Section[];
}

/** Distinct series of a chart, in first-seen order (1 when it has no series field). */
export function seriesOf(c: ChartSpec): string[] {
  if (!c.series) return [c.y.title];
  const seen: string[] = [];
  for (const r of c.data) {
    const v = String(r[c.series.field]);
    if (!seen.includes(v)) seen.push(v);
  }
  return seen;
}

export function fmt(v: Cell, digits = 3): string {
  if (v === null || v === undefined) return 'n/a';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return 'n/a';
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 1000) return v.toFixed(0);
    if (a >= 1) return v.toPrecision(Math.max(digits, Math.ceil(Math.log10(a + 1))));
    return v.toPrecision(digits);
  }
  return String(v);
}

export function allCharts(r: Report): ChartSpec[] {
  return r.sections.flatMap((s) => s.charts ?? []);
}

export const mib = (bytes: number): number => bytes / 2 ** 20;
