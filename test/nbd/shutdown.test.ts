/**
 * Graceful shutdown of `thinsim serve`: SIGTERM arrives while a client has writes in
 * flight. The server finishes (and answers) what it has read, flushes, commits and exits
 * 0; every write acknowledged before it went away reads back after a restart; the pool
 * lock is held while serving (a second server is refused) and released afterwards (a
 * second `thinsim serve`, then a writer verb, can open the pool); `thinsim check` is clean.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from '../helpers/oracle';
import { thinsim, thinsimOk } from '../helpers/cli';
import { connect, have, makePool, MiB, randomBytes, readReply, requestBytes, runOk, serve } from './helpers';

const WRITE = 1;

/** Write i: a non-overlapping, unaligned region with its own bytes. */
const region = (i: number) => ({ offset: i * 20_000 + (i % 3), length: 10_000 + (i % 7) * 100 });

test('SIGTERM with writes in flight: acknowledged writes survive, the lock is released', async (t) => {
  if (!have('nbdcopy')) return t.skip('nbdcopy not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '64M' });
  const s = await serve(pool, d.path);
  const acked = new Set<number>();
  let inflightAtSignal = 0;
  let ackedAtSignal = 0;
  try {
    const busy = thinsim(['serve', pool, '--socket', d.file('second.sock')]);
    assert.notEqual(busy.status, 0, 'a second server on the same pool is refused while the first runs');
    assert.match(busy.stderr, /busy/);

    const c = await connect(s.socket, '1');
    const inflight = new Map<bigint, number>();
    let next = 0;
    const send = () => {
      while (inflight.size < 32 && next < 3000) {
        const i = next++;
        const { offset, length } = region(i);
        c.w.write(requestBytes(WRITE, 0, BigInt(i), offset, length, randomBytes(length, i)));
        inflight.set(BigInt(i), i);
      }
    };
    send();
    try {
      for (;;) {
        const r = await readReply(c.w);
        const i = inflight.get(r.cookie);
        assert.ok(i !== undefined, `reply for a cookie in flight (${r.cookie})`);
        inflight.delete(r.cookie);
        assert.equal(r.error, 0, `write ${i}: ${r.message}`);
        acked.add(i);
        if (ackedAtSignal === 0 && acked.size >= 300) {
          ackedAtSignal = acked.size;
          inflightAtSignal = inflight.size;
          s.child.kill('SIGTERM');
        }
        send();
      }
    } catch (e) {
      assert.ok(ackedAtSignal > 0, `the connection lasted until the signal: ${(e as Error).message}`);
      assert.match((e as Error).message, /closed the connection/, 'the server closed the connection after the signal');
    }
    c.w.end();
    const r = await s.stop();
    assert.equal(r.code, 0, `exit 0 after SIGTERM:\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /unexpected failure/);
  } finally {
    await s.stop();
  }
  assert.ok(inflightAtSignal > 0, 'writes were in flight when the signal came');
  t.diagnostic(`${ackedAtSignal} writes acknowledged at SIGTERM, ${inflightAtSignal} in flight; ${acked.size} acknowledged in all`);
  assert.ok(!fs.existsSync(`${pool}/pool.lock`), 'the lock file is gone');

  // A restart can take the pool (the lock was released) and reads every acknowledged write.
  const s2 = await serve(pool, d.path);
  try {
    const img = d.file('back.raw');
    await runOk('nbdcopy', [s2.uri(1), img]);
    const back = fs.readFileSync(img);
    assert.equal(back.length, 64 * MiB);
    for (const i of acked) {
      const { offset, length } = region(i);
      assert.ok(back.subarray(offset, offset + length).equals(randomBytes(length, i)), `acknowledged write ${i} reads back`);
    }
  } finally {
    assert.equal((await s2.stop()).code, 0);
  }
  // A writer verb opens the pool too.
  fs.writeFileSync(d.file('x'), 'x');
  thinsimOk(['thin', 'write', pool, '1', '--offset', String(63 * MiB), '-i', d.file('x')]);
  thinsimOk(['check', pool]);
});

test('SIGINT on an idle server: exit 0, lock released; a stale socket file is replaced', async (t) => {
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '4M' });
  const s = await serve(pool, d.path);
  assert.match(s.printed, /^nbd\+unix:\/\/\/1\?socket=\//, `prints the URI: ${s.printed}`);
  s.child.kill('SIGINT');
  const r = await s.stop();
  assert.equal(r.code, 0, JSON.stringify(r));
  assert.ok(!fs.existsSync(s.socket), 'the socket file is removed');
  // A socket file nobody listens on (a killed server) does not stop the next one.
  const s2 = await serve(pool, d.path, []);
  s2.child.kill('SIGKILL');
  await s2.stop();
  assert.ok(fs.existsSync(s2.socket), 'SIGKILL leaves the socket file behind');
  const again = thinsim(['serve', pool, '--socket', s2.socket, '--listen', '127.0.0.1:0']);
  assert.equal(again.status, 2, 'listen and socket conflict');
  const s3 = await serve(pool, d.path, [], s2.socket);
  assert.ok(s3.printed.endsWith(s2.socket), s3.printed);
  assert.equal((await s3.stop()).code, 0);
});
