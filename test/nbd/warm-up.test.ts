/**
 * `thinsim serve`'s warm-up (src/nbd/warm-up.ts): before listening it runs requests on a
 * scratch pool in the temporary directory. Checked from outside, with real tools: the
 * served device reads back byte for byte (nbdcopy), the served pool's metadata is what it
 * was (`thinsim dump` before and after, thin_check 1.x), the scratch directory is gone
 * before the server prints its URI, `--no-warm-up` skips it, a temporary directory that
 * cannot be used costs the warm-up only (logged, and the server serves), and SIGTERM
 * during the warm-up stops the server before it serves, exit 0, the pool unchanged and
 * unlocked.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ok, repoRoot, skipReason, tmpdir, tools1x } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import { have, makePool, MiB, randomBytes, runOk, serve } from './helpers';

/** A pool whose device 1 holds `data` and whose device 2 is a snapshot of it. */
function poolWithData(dir: string, data: Buffer, scratch: string): string {
  const pool = makePool(dir, { 1: '8M' });
  fs.writeFileSync(scratch, data);
  thinsimOk(['thin', 'write', pool, '1', '--offset', '0', '-i', scratch]);
  thinsimOk(['thin', 'snap', pool, '2', '1']);
  return pool;
}

const dump = (pool: string) => thinsimOk(['dump', pool]);

test('the warm-up leaves no trace: scratch directory gone before the URI, served pool unchanged, data served', async (t) => {
  if (!have('nbdcopy')) return t.skip('nbdcopy not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const data = randomBytes(3 * MiB + 12_345, 19);
  const pool = poolWithData(d.file('pool'), data, d.file('data.bin'));
  const before = dump(pool);
  const tmp = d.file('tmp');
  fs.mkdirSync(tmp);
  const s = await serve(pool, d.path, [], undefined, { ...process.env, TMPDIR: tmp });
  try {
    assert.match(s.stderr(), /warmed up: \d+ requests on a scratch pool/);
    assert.deepEqual(fs.readdirSync(tmp), [], 'nothing of the scratch pool is left once the server listens');
    for (const id of [1, 2]) {
      const out = d.file(`back-${id}.raw`);
      await runOk('nbdcopy', [s.uri(id), out]);
      const got = fs.readFileSync(out);
      assert.ok(got.subarray(0, data.length).equals(data), `device ${id} reads back what was written`);
      assert.ok(got.subarray(data.length).every((b) => b === 0), `device ${id} is zeros past the data`);
    }
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  assert.equal(dump(pool), before, 'the served pool holds exactly what it held before');
  const tools = tools1x();
  if (tools) ok(tools.check(path.join(pool, 'metadata')), 'thin_check 1.x');
  else t.diagnostic(`thin_check 1.x not run: ${skipReason.tools1x}`);
});

test('--no-warm-up listens without a warm-up', async (t) => {
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '8M' });
  const s = await serve(pool, d.path, ['--no-warm-up']);
  try {
    assert.doesNotMatch(s.stderr(), /warm/);
    if (have('nbdinfo')) assert.match(await runOk('nbdinfo', ['--size', s.uri(1)]), /^8388608\s*$/);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('a temporary directory that cannot hold the scratch pool costs only the warm-up', async (t) => {
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const data = randomBytes(MiB, 5);
  const pool = poolWithData(d.file('pool'), data, d.file('data.bin'));
  const s = await serve(pool, d.path, [], undefined, { ...process.env, TMPDIR: d.file('missing/dir') });
  try {
    assert.match(s.stderr(), /warm-up skipped \(serving anyway[^)]*\): .*missing\/dir/);
    if (have('nbdcopy')) {
      const out = d.file('back.raw');
      await runOk('nbdcopy', [s.uri(1), out]);
      assert.ok(fs.readFileSync(out).subarray(0, data.length).equals(data), 'device 1 is served');
    }
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('SIGTERM during the warm-up: nothing is served, exit 0, the pool is unchanged and unlocked', async (t) => {
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = poolWithData(d.file('pool'), randomBytes(MiB, 7), d.file('data.bin'));
  const before = dump(pool);
  const tmp = d.file('tmp');
  fs.mkdirSync(tmp);
  const socket = d.file('nbd.sock');
  const child = spawn(process.execPath, [path.join(repoRoot(), 'bin', 'thinsim.js'), 'serve', pool, '--socket', socket], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp },
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  // The scratch directory appears once the warm-up has begun (the signal handlers are in place by then).
  const deadline = Date.now() + 30_000;
  while (fs.readdirSync(tmp).length === 0) {
    assert.ok(Date.now() < deadline && child.exitCode === null, `the warm-up never began; stderr:\n${err}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGTERM');
  assert.equal(await exited, 0, `exit status; stderr:\n${err}`);
  assert.equal(out, '', 'no URI was printed: nothing was served');
  assert.match(err, /SIGTERM: stopping before serving/);
  assert.ok(!fs.existsSync(socket), 'no socket was left');
  assert.deepEqual(fs.readdirSync(tmp), [], 'the scratch pool was removed');
  thinsimOk(['thin', 'create', pool, '3', '--size', '1M']); // a writer gets the lock
  thinsimOk(['thin', 'delete', pool, '3']);
  assert.equal(dump(pool), before);
});
