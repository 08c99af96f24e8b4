/**
 * The crash farm at CI size: 100 points over nbd, snapshot, discard and power-loss
 * (`npm run crash-farm -- --points 100 --seed 18`), every one passing the checks of
 * verify.ts, and 8 over layers and snapshotter (4 each; they need root, loop devices,
 * nbdfuse, umoci and skopeo, and skip naming what is missing); and the farm's
 * self-tests: power-loss replayed from a device that loses synced writes (power-loss.ts
 * `sabotage`) must fail points, and the records checks (docker-records.ts) must report
 * each kind of disagreement planted in a pool's records, so the checks can fail.
 * The CLI's --json output and its exit status for bad arguments are checked too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { repoRoot } from '../helpers/oracle';
import { spawnSync as run } from 'node:child_process';
import { LayerStore } from '../../src/layers/snapshotter';
import { Pool } from '../../src/pool/pool';
import { attachMissing } from '../containerd/helpers';
import { chainIdModel, checkDockerRecords } from './docker-records';
import { runFarm } from './farm';
import { layersMissing } from './layers-scenario';
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

const newSkip = layersMissing() ?? attachMissing() ?? false;

test('crash farm, 8 points over layers and snapshotter: every point passes', { skip: newSkip }, async (t) => {
  const failed: string[] = [];
  const r = await runFarm({
    points: 8, seed: Number(process.env.THINSIM_CRASH_SEED ?? 18), scenarios: ['layers', 'snapshotter'],
    onPoint: (p) => {
      t.diagnostic(`${p.scenario}: ${p.point}`);
      if (p.failures.length) failed.push(`${p.scenario} ${p.point}:\n  ${p.failures.slice(0, 6).join('\n  ')}`);
    },
  });
  assert.deepEqual(failed, []);
  assert.deepEqual(r.scenarios, { layers: 4, snapshotter: 4 });
});

test('ChainIDs: the model agrees with sha256sum over Docker\'s "parent diff" string', () => {
  const a = 'sha256:' + 'a'.repeat(64);
  const b = 'sha256:' + 'b'.repeat(64);
  const c = 'sha256:' + 'c'.repeat(64);
  const sum = (s: string) => 'sha256:' + run('sha256sum', { input: s, encoding: 'utf8' }).stdout.split(' ')[0];
  const ab = sum(`${a} ${b}`);
  assert.deepEqual(chainIdModel([a, b, c]), [a, ab, sum(`${ab} ${c}`)]);
});

test('the records checks can fail: each planted disagreement is reported', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-crash-records-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pool = path.join(dir, 'pool');
  await Pool.create(pool, { dataSize: 64 * 2 ** 20, metadataSize: 4 * 2 ** 20 }).close();
  const s = await LayerStore.open(pool, { baseSize: 4 * 2 ** 20, filesystem: 'none', commitInterval: 0 });
  const diff = 'sha256:' + 'd'.repeat(64);
  let a: { cacheId: string; deviceId: number };
  try {
    await s.prepare('x');
    a = await s.commit('A', 'x', { chainId: diff, diffId: diff, size: 1 });
  } finally {
    await s.close();
  }
  assert.deepEqual(checkDockerRecords(pool, { inFlight: false }).fails, [], 'a clean store agrees');
  const md = path.join(pool, 'docker', 'devicemapper', 'metadata');
  const ldb = path.join(pool, 'docker', 'image', 'devicemapper', 'layerdb', 'sha256');
  const plant = (what: string, change: () => void, undo: () => void, re: RegExp, inFlight = false) => {
    change();
    try {
      const f = checkDockerRecords(pool, { inFlight }).fails;
      assert.ok(f.some((m) => re.test(m)), `${what}: expected ${re} in ${JSON.stringify(f)}`);
    } finally {
      undo();
    }
    assert.deepEqual(checkDockerRecords(pool, { inFlight: false }).fails, [], `${what}: undone`);
  };
  const rec = path.join(md, a!.cacheId);
  const saved = fs.readFileSync(rec, 'utf8');
  plant('a device without its record', () => fs.rmSync(rec), () => fs.writeFileSync(rec, saved), /device \d+ of the pool has no device record/, true);
  plant('a record with another size', () => fs.writeFileSync(rec, saved.replace(/"size":\d+/, '"size":512')), () => fs.writeFileSync(rec, saved), /says 512 bytes/);
  plant('a record of a missing device', () => fs.writeFileSync(path.join(md, 'f'.repeat(64)), saved.replace(/"device_id":\d+/, '"device_id":999')), () => fs.rmSync(path.join(md, 'f'.repeat(64))), /points at device 999/, true);
  const tx = path.join(md, 'transaction-metadata');
  const savedTx = fs.readFileSync(tx, 'utf8');
  plant('an open transaction after a reopen', () => fs.writeFileSync(tx, savedTx.replace(/"open_transaction_id":\d+/, '"open_transaction_id":99')), () => fs.writeFileSync(tx, savedTx), /transaction is left open/);
  const layer = path.join(ldb, diff.slice(7));
  plant('a layerdb directory that is not whole', () => fs.rmSync(path.join(layer, 'diff')), () => fs.writeFileSync(path.join(layer, 'diff'), diff), /is not whole/, true);
  plant('a layerdb directory under the wrong ChainID', () => fs.writeFileSync(path.join(layer, 'parent'), 'sha256:' + 'e'.repeat(64)), () => fs.rmSync(path.join(layer, 'parent')), /give ChainID/, true);
  const content = path.join(pool, 'docker', 'image', 'devicemapper', 'imagedb', 'content', 'sha256');
  const cfg = JSON.stringify({ rootfs: { type: 'layers', diff_ids: [diff, 'sha256:' + '1'.repeat(64)] } });
  const id = run('sha256sum', { input: cfg, encoding: 'utf8' }).stdout.split(' ')[0];
  plant('an image whose chain is not all there', () => { fs.mkdirSync(content, { recursive: true }); fs.writeFileSync(path.join(content, id), cfg); }, () => fs.rmSync(path.join(content, id)), /of its chain has no layerdb directory/, true);
  const mounts = path.join(pool, 'docker', 'image', 'devicemapper', 'layerdb', 'mounts', '9'.repeat(64));
  plant('a container record that is not whole', () => { fs.mkdirSync(mounts, { recursive: true }); fs.writeFileSync(path.join(mounts, 'mount-id'), 'x'); }, () => fs.rmSync(path.dirname(mounts), { recursive: true }), /layerdb\/mounts is not whole/, true);
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
  const bad = spawnSync(process.execPath, [script, '--points', '2', '--scenario', 'bogus'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--scenario bogus: choose one of nbd, snapshot, discard, power-loss, layers, snapshotter/);
});
