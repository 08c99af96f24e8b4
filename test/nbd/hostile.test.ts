/**
 * Clients that speak NBD badly, on raw sockets, against one `thinsim serve` child: bad
 * magic, truncated handshakes and requests, oversized lengths and option data, offsets out
 * of range, unknown commands, flags and options, a client that drops mid-write, a client
 * that never reads its replies (the server's memory must stay bounded), and more
 * connections than --max-connections. After each one a good client still works (a raw
 * socket client always; nbdinfo too when it is installed, else that part is skipped and
 * says so), the server process is still up, and `thinsim check` finds the pool clean.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { skipPart, tmpdir } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import {
  call, connect, hello, have, makePool, MiB, optionBytes, randomBytes, readOptReply, readReply, requestBytes, runOk, serve, Wire,
  type Served,
} from './helpers';

const READ = 0, WRITE = 1, FLUSH = 3, TRIM = 4, WRITE_ZEROES = 6, BLOCK_STATUS = 7;
const EPERM = 1, EINVAL = 22, ENOSPC = 28;
const SIZE = 16 * MiB;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

test('hostile clients: the server stays up, keeps serving, and the pool stays consistent', async (t) => {
  const nbdinfo = have('nbdinfo');
  if (!nbdinfo) skipPart(t, 'nbdinfo as the good client after each case', 'nbdinfo not installed (the raw-socket good client still runs)');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '16M', 2: '16M' });
  const s: Served = await serve(pool, d.path, ['--max-connections', '4', '--export', '1=1', '--export', 'ro=2']);
  t.after(() => s.stop());
  const data = randomBytes(3 * 65536 + 5, 9);

  /** A good client sees the export's size: a raw-socket handshake always, and nbdinfo when installed. */
  async function goodClient(what: string): Promise<void> {
    const c = await connect(s.socket, '1');
    assert.equal(c.size, BigInt(SIZE), `${what}: a raw client negotiates the export`);
    assert.equal((await call(c, READ, 0, 4096)).error, 0, `${what}: a raw client reads`);
    c.w.end();
    if (nbdinfo) assert.equal((await runOk('nbdinfo', ['--size', s.uri(1)])).trim(), String(SIZE), `${what}: nbdinfo works`);
  }

  /** The good client works, the server is alive, the metadata is clean. */
  async function stillGood(what: string): Promise<void> {
    assert.equal(s.child.exitCode, null, `${what}: the server is still running`);
    await goodClient(what);
    thinsimOk(['check', pool]);
  }

  const expectClosed = async (w: Wire, what: string) => assert.ok(await w.closedWithin(5000), `${what}: the server closes the connection`);

  await t.test('a good write first (what later checks read back)', async () => {
    const c = await connect(s.socket, '1');
    assert.equal((await call(c, WRITE, 65536 - 7, data.length, { payload: data })).error, 0);
    assert.equal((await call(c, FLUSH, 0, 0)).error, 0);
    c.w.end();
  });

  await t.test('bad option magic', async () => {
    const w = await Wire.connect(s.socket);
    await hello(w);
    w.write(Buffer.from('NOTMAGIC\0\0\0\x07\0\0\0\0', 'binary'));
    await expectClosed(w, 'bad option magic');
    await stillGood('bad option magic');
  });

  await t.test('unknown client flags', async () => {
    const w = await Wire.connect(s.socket);
    await w.read(18);
    w.write(Buffer.from([0, 0, 0x80, 0x01]));
    await expectClosed(w, 'unknown client flags');
  });

  await t.test('truncated handshake and truncated option', async () => {
    const w1 = await Wire.connect(s.socket);
    await w1.read(18);
    w1.write(Buffer.from([0, 0]));
    w1.sock.end();
    await expectClosed(w1, 'two bytes of client flags');
    const w2 = await Wire.connect(s.socket);
    await hello(w2);
    w2.write(optionBytes(7, Buffer.from([0, 0, 0, 1, 0x31, 0, 0])).subarray(0, 20));
    w2.sock.end();
    await expectClosed(w2, 'half an option');
    await stillGood('truncated handshake');
  });

  await t.test('unknown option, oversized option data, malformed GO, unknown export', async () => {
    const w = await Wire.connect(s.socket);
    await hello(w);
    w.write(optionBytes(1234, Buffer.from('x')));
    assert.equal((await readOptReply(w)).type, 0x80000001, 'unknown option: ERR_UNSUP');
    w.write(optionBytes(5));
    assert.equal((await readOptReply(w)).type, 0x80000001, 'STARTTLS: ERR_UNSUP');
    w.write(optionBytes(7, Buffer.alloc(1024 * 1024, 0x41)));
    const big = await readOptReply(w);
    assert.equal(big.type, 0x80000009, `1 MiB of option data: ERR_TOO_BIG (${big.data})`);
    w.write(optionBytes(7, Buffer.from([0, 0, 0, 9, 0x31])));
    assert.equal((await readOptReply(w)).type, 0x80000003, 'GO whose name length lies: ERR_INVALID');
    w.write(optionBytes(7, Buffer.from([0, 0, 0, 1, 0x39, 0, 0])));
    assert.equal((await readOptReply(w)).type, 0x80000006, 'GO for an export that does not exist: ERR_UNKNOWN');
    w.write(optionBytes(10, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])));
    assert.equal((await readOptReply(w)).type, 0x80000003, 'SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID');
    w.write(optionBytes(3, Buffer.from('x')));
    assert.equal((await readOptReply(w)).type, 0x80000003, 'LIST with data: ERR_INVALID');
    // The session survived all of that: it can still pick an export and read.
    w.write(optionBytes(7, Buffer.from([0, 0, 0, 1, 0x31, 0, 0])));
    for (;;) { const r = await readOptReply(w); if (r.type === 1) break; assert.equal(r.type, 3); }
    w.write(requestBytes(READ, 0, 5n, 65536, 8));
    const r = await readReply(w, () => 8);
    assert.equal(r.error, 0);
    assert.deepEqual(r.data, data.subarray(7, 15));
    w.end();
    await stillGood('bad options');
  });

  await t.test('EXPORT_NAME of an unknown export or with huge data: disconnect', async () => {
    const w = await Wire.connect(s.socket);
    await hello(w);
    w.write(optionBytes(1, Buffer.from('nope')));
    await expectClosed(w, 'EXPORT_NAME nope');
    const w2 = await Wire.connect(s.socket);
    await hello(w2);
    w2.write(optionBytes(1, Buffer.alloc(100 * 1024, 0x31)));
    await expectClosed(w2, 'EXPORT_NAME of 100 KiB');
    await stillGood('EXPORT_NAME');
  });

  await t.test('bad request magic and truncated requests', async () => {
    const c = await connect(s.socket, '1');
    const bad = requestBytes(READ, 0, 1n, 0, 512);
    bad.writeUInt32BE(0xdeadbeef, 0);
    c.w.write(bad);
    await expectClosed(c.w, 'bad request magic');
    const c2 = await connect(s.socket, '1');
    c2.w.write(requestBytes(READ, 0, 1n, 0, 512).subarray(0, 13));
    c2.w.sock.end();
    await expectClosed(c2.w, 'half a request header');
    await stillGood('bad requests');
  });

  await t.test('a client that disconnects in the middle of a write payload', async () => {
    const c = await connect(s.socket, '1');
    const payload = randomBytes(MiB, 3);
    c.w.write(requestBytes(WRITE, 0, 1n, 4 * MiB, MiB));
    c.w.write(payload.subarray(0, 300 * 1024));
    await new Promise((r) => setTimeout(r, 200));
    c.w.end();
    await stillGood('disconnect mid-write');
    // Nothing of the cut-off write was applied.
    const c2 = await connect(s.socket, '1');
    const r = await call(c2, READ, 4 * MiB, MiB);
    assert.ok(r.data!.every((b) => b === 0), 'the half-sent write left no trace');
    c2.w.end();
  });

  await t.test('oversized lengths, out-of-range offsets, unknown commands and flags: error replies, the session goes on', async () => {
    const c = await connect(s.socket, '1');
    const expectError = async (what: string, error: number, type: number, offset: number | bigint, length: number, opts: { flags?: number; payload?: Buffer } = {}) => {
      const r = await call(c, type, offset, length, opts);
      assert.equal(r.error, error, `${what}: error ${error}, got ${r.error} (${r.message})`);
      assert.equal(r.data, undefined, `${what}: no data with an error`);
    };
    await expectError('READ of 4 GiB - 1', EINVAL, READ, 0, 0xffffffff);
    await expectError('READ of 33 MiB', EINVAL, READ, 0, 33 * MiB);
    await expectError('WRITE of 33 MiB (payload skipped)', EINVAL, WRITE, 0, 33 * MiB, { payload: Buffer.alloc(33 * MiB, 0x55) });
    await expectError('READ past the end', EINVAL, READ, SIZE - 10, 11);
    await expectError('READ at 2^63', EINVAL, READ, 1n << 63n, 1);
    await expectError('READ at 2^64 - 1', EINVAL, READ, (1n << 64n) - 1n, 1);
    await expectError('WRITE past the end', ENOSPC, WRITE, SIZE, 1, { payload: Buffer.from([1]) });
    await expectError('WRITE_ZEROES past the end', ENOSPC, WRITE_ZEROES, SIZE - 512, 1024);
    await expectError('TRIM past the end', EINVAL, TRIM, SIZE, 65536);
    await expectError('BLOCK_STATUS past the end', EINVAL, BLOCK_STATUS, SIZE, 65536);
    await expectError('BLOCK_STATUS of length 0', EINVAL, BLOCK_STATUS, 0, 0);
    await expectError('unknown command 99', EINVAL, 99, 0, 512);
    await expectError('NBD_CMD_CACHE (not offered)', EINVAL, 5, 0, 512);
    await expectError('READ with an unknown flag', EINVAL, READ, 0, 512, { flags: 0x8000 });
    await expectError('WRITE with NO_HOLE (only for WRITE_ZEROES)', EINVAL, WRITE, 0, 4, { flags: 2, payload: Buffer.alloc(4, 0x77) });
    await expectError('READ with REQ_ONE', EINVAL, READ, 0, 512, { flags: 8 });
    // Still in step: a good request on the same connection.
    const r = await call(c, READ, 65536, 16);
    assert.equal(r.error, 0);
    assert.deepEqual(r.data, data.subarray(7, 23), 'reads still return the data written first');
    const bs = await call(c, BLOCK_STATUS, 0, SIZE);
    // The first write touched chunks 0-3 (it started 7 bytes before chunk 1).
    assert.deepEqual(bs.extents, [{ length: 4 * 65536, flags: 0 }, { length: SIZE - 4 * 65536, flags: 3 }]);
    c.w.end();
    await stillGood('bad requests');
  });

  await t.test('simple replies without structured replies; BLOCK_STATUS refused', async () => {
    const c = await connect(s.socket, '1', { structured: false });
    const r = await call(c, READ, 0, 1, { flags: 0x8000 });
    assert.equal(r.error, EINVAL);
    assert.equal(r.data, undefined, 'a failed simple READ carries no data');
    assert.equal((await call(c, BLOCK_STATUS, 0, 512)).error, EINVAL, 'BLOCK_STATUS without a context');
    const ok = await call(c, READ, 65536, 4);
    assert.deepEqual(ok.data, data.subarray(7, 11));
    c.w.end();
  });

  await t.test('a client that sends requests and never reads replies: memory stays bounded', async () => {
    const before = rssBytes(s.child.pid!);
    const c = await connect(s.socket, '1');
    // 1500 reads of 1 MiB: 1.5 GiB of replies the client never reads.
    c.w.sock.pause(); // never read: the replies pile up in the kernel, then in the server, up to its cap
    const burst = Buffer.concat(Array.from({ length: 1500 }, (_, i) => requestBytes(READ, 0, BigInt(i), (i % 15) * MiB, MiB)));
    c.w.sock.write(burst);
    let peak = before;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, rssBytes(s.child.pid!));
    }
    // Meanwhile other clients are served.
    await goodClient('while a client does not read its replies');
    peak = Math.max(peak, rssBytes(s.child.pid!));
    t.diagnostic(`server RSS ${(before / MiB).toFixed(0)} -> ${(peak / MiB).toFixed(0)} MiB with 1.5 GiB of unread replies requested`);
    assert.ok(peak - before < 400 * MiB, `server RSS grew by ${((peak - before) / MiB).toFixed(0)} MiB (bounded by the in-flight cap, not 1.5 GiB)`);
    c.w.end();
    await stillGood('never reads replies');
  });

  await t.test('a client that floods writes without reading replies is held back', async () => {
    const before = rssBytes(s.child.pid!);
    const sock = net.connect(s.socket);
    const w = new Wire(sock);
    await hello(w);
    w.write(optionBytes(1, Buffer.from('1')));
    await w.read(10);
    const payload = randomBytes(MiB, 5);
    let sent = 0;
    const deadline = Date.now() + 2000;
    // Write as fast as the socket accepts, ignoring backpressure signals, for 2 seconds.
    while (Date.now() < deadline && sent < 2048) {
      sock.write(requestBytes(WRITE, 0, BigInt(sent), (sent % 16) * MiB, MiB));
      sock.write(payload);
      sent++;
      if (sock.writableLength > 256 * MiB) await new Promise((r) => setTimeout(r, 50));
      else await new Promise((r) => setImmediate(r));
    }
    const peak = rssBytes(s.child.pid!);
    t.diagnostic(`server RSS ${(before / MiB).toFixed(0)} -> ${(peak / MiB).toFixed(0)} MiB while a client pushed ${sent} MiB of writes`);
    assert.ok(peak - before < 400 * MiB, `server RSS grew by ${((peak - before) / MiB).toFixed(0)} MiB while a client pushed ${sent} MiB of writes`);
    sock.destroy();
    await stillGood('write flood');
  });

  await t.test('more connections than --max-connections', async () => {
    // Connections of earlier cases may still be winding down: retry until four fit.
    let held: Awaited<ReturnType<typeof connect>>[] = [];
    for (let attempt = 0; ; attempt++) {
      const tries = await Promise.allSettled([1, 2, 3, 4].map(() => connect(s.socket, '1')));
      held = tries.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      if (held.length === 4) break;
      for (const h of held) h.w.end();
      assert.ok(attempt < 50, 'four connections fit within 10 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    const extra = await Wire.connect(s.socket);
    await expectClosed(extra, 'the fifth connection');
    for (const h of held) h.w.end();
    await new Promise((r) => setTimeout(r, 200));
    await stillGood('max connections');
  });

  await t.test('the server stops cleanly after all that', async () => {
    const r = await s.stop();
    assert.equal(r.code, 0, r.stderr);
    thinsimOk(['check', pool]);
  });
});

test('read-only: --read-only exports refuse writes with EPERM and advertise READ_ONLY', async (t) => {
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '4M' });
  const s = await serve(pool, d.path, ['--read-only']);
  try {
    const c = await connect(s.socket, '1');
    assert.ok(c.flags & 2, 'READ_ONLY is set');
    assert.equal(c.flags & (1 << 5), 0, 'TRIM is not offered');
    assert.equal((await call(c, WRITE, 0, 4, { payload: Buffer.from('abcd') })).error, EPERM);
    assert.equal((await call(c, TRIM, 0, 65536)).error, EPERM);
    assert.equal((await call(c, WRITE_ZEROES, 0, 65536)).error, EPERM);
    assert.equal((await call(c, FLUSH, 0, 0)).error, 0, 'FLUSH is fine');
    assert.ok((await call(c, READ, 0, 4)).data!.equals(Buffer.alloc(4)));
    c.w.end();
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});
