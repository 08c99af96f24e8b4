/**
 * The pool lock under races and stale holders (src/pool/pool-lock.ts):
 * - 50 races of three processes opening one pool read-write at the same moment through
 *   the public API (Pool.open): exactly one becomes the writer each time, the others get
 *   E_POOL_BUSY naming the writer's pid. Some rounds start with a stale lock in place (a
 *   dead pid; a live pid with the wrong start time), so the takeover path races too.
 * - a lock holding a dead pid is taken over; one holding a live pid with another start
 *   time (a reused pid) is taken over and the live process is left alone; one holding a
 *   live pid with its real start time, or a live pid alone (older lock format), is busy.
 * - through the CLI, a write verb against a held pool exits 1 with [E_POOL_BUSY].
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { processStart } from '../../src/pool/pool-lock';
import { tmpdir } from '../helpers/oracle';
import { thinsim } from '../helpers/cli';

const MiB = 2 ** 20;
const RACER = path.join(__dirname, 'lock-racer.js');

interface Answer { pid?: number; ok?: boolean; code?: string; message?: string; released?: boolean }

function nextMessage(c: ChildProcess): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`racer ${c.pid} exited ${code}`));
    c.once('exit', onExit);
    c.once('message', (m) => { c.off('exit', onExit); resolve(m as Answer); });
  });
}

function lockOf(dir: string): string[] {
  return fs.readFileSync(path.join(dir, 'pool.lock'), 'utf8').trim().split(/\s+/);
}

/** A pid that has exited (and was reaped). */
function deadPid(): number {
  return spawnSync('true').pid!;
}

async function makePool(dir: string): Promise<void> {
  const p = Pool.create(dir, { dataSize: 16 * MiB, metadataSize: 4 * MiB });
  await p.createThin(1, MiB);
  await p.close();
}

test('50 races of three processes opening one pool read-write: exactly one writer each time', async (t) => {
  const d = tmpdir('thinsim-lockrace-');
  t.after(() => d.cleanup());
  const dir = d.file('pool');
  await makePool(dir);
  const racers = Array.from({ length: 3 }, () => fork(RACER, ['race'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  t.after(() => { for (const r of racers) r.kill('SIGKILL'); });
  const sleeper = spawn('sleep', ['600']);
  t.after(() => sleeper.kill('SIGKILL'));
  const sleeperStart = processStart(sleeper.pid!);
  assert.ok(sleeperStart, 'the start time of a live process is readable');
  const kinds = { clean: 0, dead: 0, reused: 0 };
  for (let round = 0; round < 50; round++) {
    // Rounds 1, 4, 7...: a dead writer's lock; 2, 5, 8...: a lock naming a live process
    // (sleep) with another start time, i.e. a pid reused since the writer died.
    const kind = round % 3 === 0 ? 'clean' : round % 3 === 1 ? 'dead' : 'reused';
    kinds[kind]++;
    const lockFile = path.join(dir, 'pool.lock');
    assert.ok(!fs.existsSync(lockFile), `round ${round}: no lock left by the last round`);
    if (kind === 'dead') fs.writeFileSync(lockFile, `${deadPid()} 12345\n`);
    if (kind === 'reused') fs.writeFileSync(lockFile, `${sleeper.pid} ${BigInt(sleeperStart!) + 7n}\n`);
    const at = Date.now() + 150;
    const answers = racers.map(nextMessage);
    for (const r of racers) r.send({ dir, at });
    const got = await Promise.all(answers);
    const writers = got.filter((a) => a.ok);
    assert.equal(writers.length, 1, `round ${round} (${kind}): exactly one writer, got ${JSON.stringify(got)}`);
    const winner = writers[0].pid!;
    for (const a of got.filter((x) => !x.ok)) {
      assert.equal(a.code, 'E_POOL_BUSY', `round ${round} (${kind}): the loser ${a.pid} gets E_POOL_BUSY (${a.message})`);
      assert.match(a.message!, new RegExp(`is busy \\(held by pid ${winner}\\)`), `round ${round}: the error names the writer`);
    }
    assert.equal(lockOf(dir)[0], String(winner), `round ${round}: the lock names the writer`);
    assert.equal(lockOf(dir)[1], processStart(winner), `round ${round}: the lock records the writer's start time`);
    const released = racers.filter((r) => r.pid === winner).map(nextMessage);
    for (const r of racers) r.send({ release: true });
    for (const r of racers) if (r.pid !== winner) await nextMessage(r);
    assert.deepEqual(await Promise.all(released), [{ released: true }], `round ${round}: the writer closes`);
  }
  assert.equal(sleeper.exitCode, null, 'the process whose pid a stale lock named was left alone');
  t.diagnostic(`rounds: ${JSON.stringify(kinds)}`);
});

test('a lock holding a dead pid is taken over', async (t) => {
  const d = tmpdir('thinsim-lock-');
  t.after(() => d.cleanup());
  const dir = d.file('pool');
  await makePool(dir);
  const dead = deadPid();
  fs.writeFileSync(path.join(dir, 'pool.lock'), `${dead} 4242\n`);
  const p = Pool.open(dir);
  assert.deepEqual(lockOf(dir), [String(process.pid), processStart(process.pid)]);
  await p.close();
  assert.ok(!fs.existsSync(path.join(dir, 'pool.lock')), 'close removes the lock');
  // The older format, a pid alone, is judged by the pid.
  fs.writeFileSync(path.join(dir, 'pool.lock'), `${dead}\n`);
  await Pool.open(dir).close();
});

test('a lock holding a live pid with another start time is stale (reused pid); with its own start time it is busy', async (t) => {
  const d = tmpdir('thinsim-lock-');
  t.after(() => d.cleanup());
  const dir = d.file('pool');
  await makePool(dir);
  const live = spawn('sleep', ['600']);
  t.after(() => live.kill('SIGKILL'));
  const start = processStart(live.pid!)!;
  const lockFile = path.join(dir, 'pool.lock');

  fs.writeFileSync(lockFile, `${live.pid} ${start}\n`);
  assert.throws(() => Pool.open(dir), (e: Error & { code?: string }) => e.code === 'E_POOL_BUSY' && e.message.includes(`held by pid ${live.pid}`), 'its own start time: busy');
  assert.deepEqual(lockOf(dir), [String(live.pid), start], 'a busy lock is left alone');

  fs.writeFileSync(lockFile, `${live.pid}\n`);
  assert.throws(() => Pool.open(dir), { code: 'E_POOL_BUSY' }, 'a live pid alone (older lock format): busy');

  fs.writeFileSync(lockFile, `${live.pid} ${BigInt(start) + 1n}\n`);
  const p = Pool.open(dir);
  assert.deepEqual(lockOf(dir), [String(process.pid), processStart(process.pid)], 'the reused pid\'s lock was taken over');
  assert.equal(live.exitCode, null, 'the live process is untouched');
  // status of a read-only open names the real holder (us), not the process with the reused pid.
  const ro = Pool.open(dir, { readOnly: true });
  assert.equal(ro.status().lockedBy, process.pid);
  await ro.close();
  await p.close();

  // Our own pid with another start time: a lock left by an earlier process that had our pid.
  fs.writeFileSync(lockFile, `${process.pid} ${BigInt(processStart(process.pid)!) + 1n}\n`);
  await Pool.open(dir).close();
});

test('CLI: a write verb against a pool another process holds exits 1 with [E_POOL_BUSY] naming it', async (t) => {
  const d = tmpdir('thinsim-lock-');
  t.after(() => d.cleanup());
  const dir = d.file('pool');
  await makePool(dir);
  const p = Pool.open(dir);
  t.after(() => p.close());
  const r = thinsim(['thin', 'create', dir, '2', '--size', '1M']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`held by pid ${process.pid}\\b.*\\[E_POOL_BUSY\\]`));
});
