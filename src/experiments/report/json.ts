/** report.json: the Report as it is, plus each chart's vega-lite spec, so a reader can re-plot it. Pure. */
import { vegaLiteSpec } from './charts';
import type { Report } from './model';

export function reportJson(r: Report): string {
  const withSpecs = {
    ...r,
    sections: r.sections.map((s) => ({ ...s, charts: (s.charts ?? []).map((c) => ({ ...c, vegaLite: vegaLiteSpec(c) })) })),
  };
  return JSON.stringify(withSpecs, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}
