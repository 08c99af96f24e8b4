/** Pieces report.md and report.html share: the machine and parameter tables, a chart's raw-data table. Pure. */
import { ChartSpec, fmt, Report, Table } from './model';

export function machineTable(r: Report): Table {
  const m = r.machine;
  return {
    columns: ['', ''],
    rows: [
      ['CPU', `${m.cpuModel} (${m.cores} cores)`],
      ['memory', `${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`],
      ['kernel', m.kernel],
      ['OS', m.os],
      ['filesystem of the work dir', `${m.filesystem} (${m.workDir})`],
      ['node', m.node],
      ['thinsim', m.thinsim],
      ['date', r.date],
      ['duration', `${r.durationSeconds.toFixed(1)} s`],
    ],
  };
}

export function paramsTable(r: Report): Table {
  return { columns: ['parameter', 'value'], rows: Object.entries(r.params).map(([k, v]) => [k, fmt(v)]) };
}

export function toolsTable(r: Report): Table {
  return { columns: ['tool', 'version'], rows: Object.entries(r.tools).map(([k, v]) => [k, v]) };
}

/** The numbers behind a chart: every field that appears in its rows. */
export function chartTable(c: ChartSpec): Table {
  const cols: string[] = [];
  for (const row of c.data) for (const k of Object.keys(row)) if (!cols.includes(k)) cols.push(k);
  return { title: `Data: ${c.title}`, columns: cols, rows: c.data.map((row) => cols.map((k) => row[k])) };
}
