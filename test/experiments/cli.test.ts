/** The experiment verb: list, bad names, --json. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = path.resolve(__dirname, '../../../bin/thinsim.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: os.tmpdir() });

test('experiment list names every experiment, all available', () => {
  const r = run('experiment', 'list');
  assert.equal(r.status, 0, r.stderr);
  for (const n of ['loop-vs-direct', 'block-size', 'layer-depth', 'overcommit', 'metadata-size', 'driver-compare']) assert.match(r.stdout, new RegExp(`^${n} `, 'm'));
  assert.doesNotMatch(r.stdout, /not yet/);
  const j = JSON.parse(run('experiment', 'list', '--json').stdout) as { name: string; available: boolean }[];
  assert.deepEqual(j.filter((e) => !e.available).map((e) => e.name), []);
  assert.ok(j.some((e) => e.name === 'driver-compare' && e.available));
});

test('an unknown experiment is bad usage (exit 2)', () => {
  const r = run('experiment', 'no-such-thing');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no experiment "no-such-thing"/);
});

test('experiment overcommit --quick --json --out: the report on stdout, three files written, plain progress lines on stderr', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-exp-cli-'));
  try {
    const r = run('experiment', 'overcommit', '--quick', '--json', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.experiment, 'overcommit');
    assert.ok(rep.machine.cpuModel && rep.machine.kernel && rep.machine.filesystem);
    for (const f of ['report.json', 'report.md', 'report.html', 'chart-1.svg']) assert.ok(fs.existsSync(path.join(out, f)), f);
    assert.match(r.stderr, /^overcommit \[1\/3\] error_if_no_space #1$/m, 'not a TTY: plain progress lines');
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    assert.match(md, /!\[[^\]]+\]\(chart-1\.svg\)/);
    assert.deepEqual(fs.readdirSync(out).filter((f) => f.startsWith('.work')), [], 'scratch space removed');
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
