/**
 * Pool scenarios, the pool lock across processes: a second read-write open gets E_POOL_BUSY
 * while read-only opens work, a SIGKILLed holder's stale lock is taken over, and processes
 * racing for a stale lock never hold it at the same time.
 *
 * Every scenario drives a Pool and the in-memory ContentModel (test/helpers/pool-model.ts)
 * with the same operations (through ./scenario-setup), then compares every device's full
 * content, the mapped sectors and the used data blocks with the model, closes the pool and runs
 * checkMetadata, thin_check 1.x and 0.9.0 and thin_dump 1.x (mappings, sharing and the data
 * file's bytes) on the result. Scenarios follow the device-mapper-test-suite thinp tests and
 * thin-provisioning.rst. Randomised tests print their seed on failure; replay one with
 * THINSIM_SEED=<seed>.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { MiB, tempDir, verifyPool } from '../helpers/pool-model';
import { makePool, thin, write } from './scenario-setup';

const POOL_JS = path.resolve(__dirname, '../../src/pool/pool.js');

// ------------------------------------------------------------------------------ the pool lock

function childOpen(dir: string): { code?: string; message?: string; ok?: boolean; ro?: string } {
  const code = `
    const { Pool } = require(${JSON.stringify(POOL_JS)});
    const dir = process.env.POOL_DIR;
    const out = {};
    try { const p = Pool.open(dir); out.ok = true; } catch (e) { out.code = e.code; out.message = e.message; }
    const ro = Pool.open(dir, { readOnly: true });
    ro.read(1, 0, 16).then((b) => { out.ro = b.toString(); return ro.close(); })
      .then(() => console.log(JSON.stringify(out)), (e) => { console.log(JSON.stringify({ error: String(e) })); });
  `;
  const r = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, POOL_DIR: dir }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('pool lock: a second read-write open in another process gets E_POOL_BUSY naming our pid; read-only opens work', async (t) => {
  const s = await makePool(t);
  await thin(s, 1, MiB);
  await write(s, 1, 0, Buffer.from('committed-bytes!'));
  await s.pool.flush();
  const out = childOpen(s.dir);
  assert.equal(out.ok, undefined, 'the second read-write open must fail');
  assert.equal(out.code, 'E_POOL_BUSY');
  assert.match(out.message!, new RegExp(`held by pid ${process.pid}\\b`));
  assert.equal(out.ro, 'committed-bytes!', 'a read-only open reads the committed data');
  assert.equal((() => { try { Pool.open(s.dir); return 'opened'; } catch (e) { return (e as { code?: string }).code; } })(), 'E_POOL_BUSY', 'a second open in this process');
  await verifyPool(t, s.pool, s.model);
  assert.ok(!fs.existsSync(path.join(s.dir, 'pool.lock')), 'close releases the lock');
});

test('pool lock: the lock of a process killed with SIGKILL is stale and is taken over', async (t) => {
  const s = await makePool(t);
  await thin(s, 1, MiB);
  await s.pool.close();
  const code = `
    const { Pool } = require(${JSON.stringify(POOL_JS)});
    const p = Pool.open(process.env.POOL_DIR);
    p.write(1, 4096, Buffer.from('child-was-here')).then(() => p.flush()).then(() => { console.log('ready'); setInterval(() => {}, 1000); });
  `;
  const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, POOL_DIR: s.dir }, stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b) => { out += b; if (out.includes('ready')) resolve(); });
    child.on('exit', (c) => reject(new Error(`child exited ${c} before it was ready`)));
  });
  const busy = (() => { try { Pool.open(s.dir); return undefined; } catch (e) { return e as Error & { code?: string }; } })();
  assert.equal(busy?.code, 'E_POOL_BUSY');
  assert.match(busy!.message, new RegExp(`held by pid ${child.pid}\\b`));
  const ro = Pool.open(s.dir, { readOnly: true });
  assert.equal((await ro.read(1, 4096, 14)).toString(), 'child-was-here');
  assert.equal(ro.status().lockedBy, child.pid);
  await ro.close();
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await exited;
  assert.equal(fs.readFileSync(path.join(s.dir, 'pool.lock'), 'utf8').split(' ')[0], String(child.pid), 'the dead child left its lock');
  s.pool = Pool.open(s.dir);
  assert.equal(fs.readFileSync(path.join(s.dir, 'pool.lock'), 'utf8').split(' ')[0], String(process.pid), 'we hold the lock now');
  s.model.write(1, 4096, Buffer.from('child-was-here'));
  await verifyPool(t, s.pool, s.model);
});

test('pool lock: processes racing to take over a stale lock never hold it at the same time', async (t) => {
  const dir = tempDir(t);
  const lockJs = path.resolve(__dirname, '../../src/pool/pool-lock.js');
  const dead = spawnSync('true').pid!;
  fs.writeFileSync(path.join(dir, 'pool.lock'), `${dead}\n`);
  // Each child: take the lock, hold it 5 ms, check it still names us, then "die" by leaving a
  // lock that names a dead pid (replaced atomically, as a killed holder leaves it), and go again.
  const code = `
    const { PoolLock } = require(${JSON.stringify(lockJs)});
    const fs = require('fs'), path = require('path');
    const dir = process.env.D, file = path.join(dir, 'pool.lock');
    const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    while (Date.now() < Number(process.env.START)) sleep(1);
    let wins = 0, stolen = 0;
    while (Date.now() < Number(process.env.UNTIL)) {
      try { PoolLock.acquire(dir); } catch (e) { if (e.code !== 'E_POOL_BUSY') throw e; continue; }
      wins++;
      sleep(5);
      let now;
      try { now = fs.readFileSync(file, 'utf8').split(' ')[0]; } catch { now = 'gone'; }
      if (now !== String(process.pid)) stolen++;
      fs.writeFileSync(file + '.' + process.pid, process.env.DEAD + '\\n');
      fs.renameSync(file + '.' + process.pid, file);
    }
    console.log(JSON.stringify({ wins, stolen }));
  `;
  const start = Date.now() + 1500;
  const env = { ...process.env, D: dir, DEAD: String(dead), START: String(start), UNTIL: String(start + 1500) };
  const results = await Promise.all(Array.from({ length: 4 }, () => new Promise<{ wins: number; stolen: number }>((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', code], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout!.on('data', (b) => { out += b; });
    c.stderr!.on('data', (b) => { err += b; });
    c.on('exit', (status) => (status === 0 ? resolve(JSON.parse(out)) : reject(new Error(`lock racer exited ${status}: ${err}`))));
  })));
  const wins = results.reduce((a, r) => a + r.wins, 0);
  const stolen = results.reduce((a, r) => a + r.stolen, 0);
  t.diagnostic(`${wins} takeovers, ${stolen} of them lost to another process while held`);
  assert.ok(wins >= 20, `only ${wins} takeovers happened`);
  assert.equal(stolen, 0, `${stolen} of ${wins} lock holders found their lock taken over by another live process while they held it`);
});
