/**
 * Opens a written report.html in headless Chromium (puppeteer-core with the system
 * /usr/bin/chromium; no browser download) and checks every chart against the
 * report.json beside it: the SVG rendered with a non-zero size, one legend label per
 * series (when the chart has series), both axis titles, and no console errors.
 * Saves a full-page screenshot as report.png beside the report.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export function browserSkip(): string | false {
  if (!fs.existsSync(CHROMIUM)) return `chromium is not installed at ${CHROMIUM} (Debian package chromium)`;
  try {
    require.resolve('puppeteer-core');
  } catch {
    return 'puppeteer-core is not installed (npm ci)';
  }
  return false;
}

interface JsonChart { id: string; x: { title: string }; y: { title: string }; series?: { field: string }; data: Record<string, unknown>[] }

/** Expected series per chart, computed here from the raw rows in report.json. */
function expectedSeries(c: JsonChart): number {
  if (!c.series) return 0; // no legend when there is one series
  return new Set(c.data.map((r) => String(r[c.series!.field]))).size;
}

export async function checkReportInBrowser(dir: string): Promise<void> {
  const puppeteer = await import('puppeteer-core');
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as { sections: { charts?: JsonChart[] }[] };
  const charts = report.sections.flatMap((s) => s.charts ?? []);
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 900 });
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    await page.goto('file://' + path.join(dir, 'report.html'), { waitUntil: 'load' });
    const figs = await page.$$eval('figure.chart', (els) => els.map((el) => {
      const svg = el.querySelector('svg');
      const box = svg?.getBoundingClientRect();
      return {
        id: el.id, series: Number(el.getAttribute('data-series')),
        width: box?.width ?? 0, height: box?.height ?? 0,
        marks: svg ? svg.querySelectorAll('.role-mark path, .role-mark rect, .role-mark line, .role-mark *').length : 0,
        legend: svg ? [...svg.querySelectorAll('.role-legend-label text')].map((x) => x.textContent ?? '') : [],
        axisTitles: svg ? [...svg.querySelectorAll('.role-axis-title text')].map((x) => x.textContent ?? '') : [],
      };
    }));
    assert.equal(figs.length, charts.length, 'one rendered figure per chart in report.json');
    for (const c of charts) {
      const f = figs.find((x) => x.id === c.id);
      assert.ok(f, `chart ${c.id} is in the page`);
      assert.ok(f.width > 100 && f.height > 100, `chart ${c.id} has a visible SVG (${f.width}x${f.height})`);
      assert.ok(f.marks > 0, `chart ${c.id} draws marks`);
      assert.equal(f.legend.length, expectedSeries(c), `chart ${c.id}: legend entries = series in its data`);
      assert.ok(f.axisTitles.includes(c.x.title) && f.axisTitles.includes(c.y.title), `chart ${c.id}: axis titles "${c.x.title}" and "${c.y.title}" (got ${JSON.stringify(f.axisTitles)})`);
    }
    await page.screenshot({ path: path.join(dir, 'report.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(dir, 'report.png')).size > 20_000, 'the screenshot is not blank');
    assert.deepEqual(errors, [], 'no console errors');
  } finally {
    await browser.close();
  }
}
