/**
 * Charts as inline SVG, rendered in Node by vega-lite (compile) and vega's headless
 * view (`toSVG`, renderer 'none'): no browser, no canvas, no network.
 *
 * Contract: `renderSvg(spec)` gives a standalone <svg> string with the chart's
 * title, both axis titles and (when it has series) a legend with one entry per
 * series; the same input gives the same SVG.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { ChartSpec } from './model';

const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#9d755d'];

export function vegaLiteSpec(c: ChartSpec): vl.TopLevelSpec {
  const xType = c.x.type ?? (c.mark === 'bar' ? 'nominal' : 'quantitative');
  const x: any = { field: c.x.field, type: xType, title: c.x.title, sort: null };
  if (c.x.log) x.scale = { type: 'log', nice: false };
  if (xType !== 'quantitative') {
    // Long category names (workloads, configurations) are tilted rather than cut.
    const longest = Math.max(0, ...c.data.map((r) => String(r[c.x.field]).length));
    const n = new Set(c.data.map((r) => String(r[c.x.field]))).size;
    x.axis = longest * 6.5 * n > 520 ? { labelAngle: -30, labelLimit: 400 } : { labelAngle: 0, labelLimit: 400 };
  }
  const y: any = { field: c.y.field, type: 'quantitative', title: c.y.title };
  // A bar has no zero on a log scale: log is for points and lines only.
  if (c.y.log && c.mark !== 'bar') y.scale = { type: 'log' };
  const color: any = c.series
    ? { field: c.series.field, type: 'nominal', title: c.series.title, sort: null, scale: { range: PALETTE } }
    : { value: PALETTE[0] };
  const enc: any = { x, y, color };
  if (c.series && c.mark === 'bar') enc.xOffset = { field: c.series.field, sort: null };
  const main: any = { mark: c.mark === 'line' ? { type: 'line', point: true } : { type: c.mark }, encoding: enc };
  const layers: any[] = [main];
  if (c.range) {
    const renc: any = { x, y: { field: c.range.low, type: 'quantitative' }, y2: { field: c.range.high }, color };
    if (enc.xOffset) renc.xOffset = enc.xOffset;
    layers.push({ mark: { type: 'rule', strokeWidth: 1.5 }, encoding: renc });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: c.title,
    width: 520,
    height: 260,
    background: 'white',
    data: { values: c.data as any[] },
    layer: layers,
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11, labelLimit: 400 } },
  } as vl.TopLevelSpec;
}

export async function renderSvg(c: ChartSpec): Promise<string> {
  const compiled = vl.compile(vegaLiteSpec(c)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The chart renderer's versions, for the report's tool list. */
export function rendererVersions(): Record<string, string> {
  return { vega: (vega as unknown as { version: string }).version, 'vega-lite': (vl as unknown as { version: string }).version };
}
