/**
 * What a write killed mid-way leaves, and who removes it (durable.ts sweepInterrupted).
 * A child rewrites a record with writeAtomic and rebuilds a directory aside in a loop and
 * is killed with SIGKILL at random moments: the record is always whole JSON (old or new),
 * and after sweepInterrupted no temporary file or directory is left (names matched here
 * by their shapes, independently of the code). Leftovers of a live process (this one) and
 * files that only look similar are kept. Pool.open and LayerStore.open sweep the pool
 * directory and POOL/docker; a read-only open sweeps nothing.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sweepInterrupted } from '../../src/durable';
import { LayerStore } from '../../src/layers/snapshotter';
import { Pool } from '../../src/pool/pool';
import { Rand } from '../../support/random';
import { seeded, suiteSeeds } from '../helpers/seeds';

const WRITER = path.join(__dirname, 'atomic-writer.js');
const MiB = 1024 * 1024;

/** Temporary work by shape: `.tmp-*` files, `*.tmp-PID` and `*.rm-PID-*` directories (not what is inside them). */
function leftovers(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.name.startsWith('.tmp-') || /\.tmp-\d+$/.test(e.name) || /\.rm-\d+-/.test(e.name)) out.push(path.relative(base, full));
    else if (e.isDirectory()) out.push(...leftovers(full, base));
  }
  return out;
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-interrupted-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

async function killWhileWriting(dir: string, afterMs: number): Promise<void> {
  const child = spawn(process.execPath, [WRITER, 'write', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  const closed = new Promise<void>((res) => child.on('close', () => res()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('close', (code) => reject(new Error(`atomic-writer exited ${code}: ${err}`)));
  });
  await new Promise((res) => setTimeout(res, afterMs));
  child.kill('SIGKILL');
  await closed;
}

test('writes killed at random moments leave whole records; sweepInterrupted removes every leftover of the dead writers', async (t) => {
  const seed = suiteSeeds(1, 7100)[0];
  await seeded(t, seed, () => killLoop(t, seed));
});

async function killLoop(t: TestContext, seed: number): Promise<void> {
  const r = new Rand(seed);
  const dir = tempDir(t);
  let seen = 0;
  for (let i = 0; i < 16; i++) {
    await killWhileWriting(dir, 5 + r.int(60));
    const rec = JSON.parse(fs.readFileSync(path.join(dir, 'record.json'), 'utf8')) as { n: number; body: string };
    assert.equal(rec.body.length, 256 * 1024, `kill ${i}: the record is whole`);
    const left = leftovers(dir);
    seen += left.length;
    const removed = sweepInterrupted(dir, { recursive: true }).map((f) => path.relative(dir, f)).sort();
    assert.deepEqual(removed, left.sort(), `kill ${i}: sweepInterrupted removes exactly the leftovers`);
    assert.deepEqual(leftovers(dir), [], `kill ${i}: nothing is left`);
  }
  t.diagnostic(`${seen} leftovers of 16 killed writers removed`);
}

test('sweepInterrupted keeps a live process\'s temporary work and names that only look alike', (t) => {
  const dir = tempDir(t);
  const mine = [`.tmp-${process.pid}-0a1b2c3d`, `layer.tmp-${process.pid}`, `old.rm-${process.pid}-0a1b2c3d`];
  const alike = ['.tmp-notapid-0a1b2c3d', 'record.json', '.hidden', 'x.tmp-', 'x.rm-12-zz'];
  for (const n of [...mine, ...alike]) fs.writeFileSync(path.join(dir, n), 'x');
  assert.deepEqual(sweepInterrupted(dir), []);
  assert.deepEqual(fs.readdirSync(dir).sort(), [...mine, ...alike].sort());
  assert.deepEqual(sweepInterrupted(path.join(dir, 'missing')), [], 'a missing directory has no leftovers');
});

test('a read-write open sweeps the pool directory and POOL/docker; a read-only open sweeps nothing', async (t) => {
  const dir = tempDir(t);
  const pool = Pool.create(dir, { dataSize: 16 * MiB, metadataSize: 4 * MiB });
  await pool.close();
  // A pid that is certainly dead: a child that has exited.
  const dead = await new Promise<number>((res) => { const c = spawn(process.execPath, ['-e', '0']); c.on('close', () => res(c.pid!)); });
  const records = path.join(dir, 'docker', 'devicemapper', 'metadata');
  fs.mkdirSync(records, { recursive: true });
  const plant = () => {
    fs.writeFileSync(path.join(dir, `.tmp-${dead}-0a1b2c3d`), '{"half');
    fs.writeFileSync(path.join(records, `.tmp-${dead}-0a1b2c3d`), '{"half');
    fs.mkdirSync(path.join(dir, 'docker', `layer.tmp-${dead}`), { recursive: true });
  };
  plant();
  const ro = Pool.open(dir, { readOnly: true });
  await ro.close();
  assert.equal(leftovers(dir).length, 3, 'a read-only open removes nothing');
  const rw = Pool.open(dir);
  await rw.close();
  assert.deepEqual(leftovers(dir).sort(), [path.join('docker', 'devicemapper', 'metadata', `.tmp-${dead}-0a1b2c3d`), path.join('docker', `layer.tmp-${dead}`)].sort(), 'Pool.open sweeps its own directory only');
  const store = await LayerStore.open(dir, { commitInterval: 0 });
  try {
    assert.equal(store.recovery!.interrupted!.length, 2);
  } finally {
    await store.close();
  }
  assert.deepEqual(leftovers(dir), [], 'LayerStore.open sweeps POOL/docker');
});
