/**
 * The crash farm at CI size: 100 points over nbd, snapshot, discard and power-loss
 * (`npm run crash-farm -- --points 100 --seed 18`), every one passing the checks of
 * verify.ts; and the farm's self-test: power-loss replayed from a device that loses
 * synced writes (power-loss.ts `sabotage`) must fail points, so the checks can fail.
 * The CLI's --json output and its exit status for bad arguments are checked too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { repoRoot } from '../helpers/oracle';
import { runFarm } from './farm';
import { powerLoss } from './power-loss';

test('crash farm, 100 points over nbd, snapshot, discard and power-loss: every point passes', async (t) => {
  const failed: string[] = [];
  const r = await runFarm({
    points: 100, seed: Number(process.env.THINSIM_CRASH_SEED ?? 18), scenarios: ['nbd', 'snapshot', 'discard', 'power-loss'],
    onPoint: (p) => { if (p.failures.length) failed.push(`${p.scenario} ${p.point}:\n  ${p.failures.slice(0, 6).join('\n  ')}`); },
  });
  t.diagnostic(`${r.points} points: ${JSON.stringify(r.scenarios)}`);
  assert.deepEqual(failed, []);
  assert.equal(r.points, 100);
  for (const s of ['nbd', 'snapshot', 'discard', 'power-loss']) assert.equal(r.scenarios[s], 25, s);
});

test('the farm can fail: power-loss replayed from a device that lost synced writes is caught', async () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-crash-sabotage-'));
  try {
    const points = await powerLoss(7, 12, scratch, { sabotage: true });
    const caught = points.filter((p) => p.failures.length > 0);
    assert.ok(caught.length >= 6, `sabotaged points caught: ${caught.length} of ${points.length}`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
});

test('crash-farm CLI: --json prints {points, failures, scenarios}; bad arguments exit 2', () => {
  const script = path.join(repoRoot(), 'scripts', 'crash-farm.js');
  const r = spawnSync(process.execPath, [script, '--points', '2', '--seed', '3', '--scenario', 'power-loss', '--json'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { points: 2, failures: 0, scenarios: { 'power-loss': 2 } });
  const bad = spawnSync(process.execPath, [script, '--points', '2', '--scenario', 'layers'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--scenario layers: choose one of nbd, snapshot, discard, power-loss/);
});
