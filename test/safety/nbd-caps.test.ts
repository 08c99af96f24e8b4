/**
 * Resource caps of `thinsim serve` (src/nbd), pushed with raw sockets against a server
 * child; the server's memory is read from /proc/PID/status (VmRSS), not from thinsim:
 * - the maximum block size advertised in NBD_INFO_BLOCK_SIZE is the request cap: a WRITE
 *   of exactly that size succeeds, one 512 bytes larger gets EINVAL (or EOVERFLOW, as the
 *   NBD spec allows) and its payload is consumed without being held: a WRITE that
 *   declares 1 GiB and sends it leaves the server's RSS within 128 MiB of where it was,
 *   and the session goes on;
 * - option data: an option that declares 4 GiB - 1 of data and streams 256 MiB of it
 *   leaves the RSS bounded too;
 * - connections: with no --max-connections the documented default (16) is served and one
 *   more is closed by the server at once (the --max-connections case is in
 *   test/nbd/hostile.test.ts).
 * The machine is shared: bounds are generous, and each measures the server's own growth.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import { call, connect, hello, makePool, MiB, optionBytes, randomBytes, readOptReply, readReply, requestBytes, serve, Wire } from '../nbd/helpers';

const READ = 0, WRITE = 1;
const EINVAL = 22, EOVERFLOW = 75;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Write `total` bytes of `chunk` repeated, honouring backpressure; calls `sample` between chunks. */
async function pump(w: Wire, chunk: Buffer, total: number, sample: () => void): Promise<number> {
  let sent = 0;
  while (sent < total && !w.closed) {
    const n = Math.min(chunk.length, total - sent);
    const more = w.sock.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    sent += n;
    if (!more) await new Promise<void>((r) => { w.sock.once('drain', r); w.sock.once('close', r); });
    if ((sent / chunk.length) % 16 === 0) sample();
  }
  return sent;
}

/** Handshake with GO asking for NBD_INFO_BLOCK_SIZE; returns the session and the advertised sizes. */
async function goWithBlockSize(sock: string, name: string): Promise<{ w: Wire; min: number; preferred: number; max: number }> {
  const w = await Wire.connect(sock);
  await hello(w);
  const n = Buffer.from(name);
  const data = Buffer.alloc(4 + n.length + 2 + 2);
  data.writeUInt32BE(n.length, 0);
  n.copy(data, 4);
  data.writeUInt16BE(1, 4 + n.length);
  data.writeUInt16BE(3, 6 + n.length); // NBD_INFO_BLOCK_SIZE
  w.write(optionBytes(7, data));
  let sizes: { min: number; preferred: number; max: number } | undefined;
  for (;;) {
    const r = await readOptReply(w);
    if (r.type === 1) break;
    assert.equal(r.type, 3, `GO reply 0x${r.type.toString(16)}`);
    if (r.data.readUInt16BE(0) === 3) sizes = { min: r.data.readUInt32BE(2), preferred: r.data.readUInt32BE(6), max: r.data.readUInt32BE(10) };
  }
  assert.ok(sizes, 'the server sent NBD_INFO_BLOCK_SIZE');
  return { w, ...sizes };
}

test('thinsim serve caps: request size, option data, default connections', { timeout: 300_000 }, async (t) => {
  const d = tmpdir('thinsim-nbdcaps-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '128M' });
  const s = await serve(pool, d.path, []);
  t.after(() => s.stop());
  const pid = s.child.pid!;

  await t.test('the advertised maximum block size is the cap; a 1 GiB WRITE is refused without being held', async () => {
    const { w, max } = await goWithBlockSize(s.socket, '1');
    const session = { w, size: 0n, flags: 0 };
    assert.ok(max >= 1 * MiB && max < 1024 * MiB, `max block size ${max}`);
    const atMax = randomBytes(max, 3);
    assert.equal((await call(session, WRITE, 0, max, { payload: atMax })).error, 0, `a WRITE of exactly ${max} bytes`);
    const justOver = await call(session, WRITE, 0, max + 512, { payload: Buffer.alloc(max + 512, 1) });
    assert.ok([EINVAL, EOVERFLOW].includes(justOver.error), `a WRITE of ${max + 512} bytes: error ${justOver.error}`);
    const before = rssBytes(pid);
    let peak = before;
    const total = 1024 * MiB;
    w.write(requestBytes(WRITE, 0, 77n, 0, total));
    assert.equal(await pump(w, Buffer.alloc(MiB, 0xee), total, () => { peak = Math.max(peak, rssBytes(pid)); }), total, 'the server took the whole payload');
    const r = await readReply(w);
    peak = Math.max(peak, rssBytes(pid));
    assert.equal(r.cookie, 77n);
    assert.ok([EINVAL, EOVERFLOW].includes(r.error), `the 1 GiB WRITE: error ${r.error}`);
    t.diagnostic(`server RSS ${(before / MiB).toFixed(0)} -> peak ${(peak / MiB).toFixed(0)} MiB while a 1 GiB WRITE payload was consumed`);
    assert.ok(peak - before < 128 * MiB, `RSS grew ${((peak - before) / MiB).toFixed(0)} MiB`);
    const back = await call(session, READ, 0, 4096);
    assert.deepEqual(back.data, atMax.subarray(0, 4096), 'the session goes on and nothing of the refused writes landed');
    w.end();
  });

  await t.test('option data declared as 4 GiB - 1: consumed without being held', async () => {
    const w = await Wire.connect(s.socket);
    await hello(w);
    const h = optionBytes(7);
    h.writeUInt32BE(0xffffffff, 12);
    w.write(h);
    const before = rssBytes(pid);
    let peak = before;
    const sent = await pump(w, Buffer.alloc(MiB, 0x41), 256 * MiB, () => { peak = Math.max(peak, rssBytes(pid)); });
    peak = Math.max(peak, rssBytes(pid));
    // The server reads it all (it answers ERR_TOO_BIG once the option's data is over): the
    // connection is open, so the bytes went through the server, not around it.
    assert.equal(sent, 256 * MiB, 'the server kept reading');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(w.closed, false, 'the connection is still open after 256 MiB');
    t.diagnostic(`server RSS ${(before / MiB).toFixed(0)} -> peak ${(peak / MiB).toFixed(0)} MiB while 256 MiB of option data arrived`);
    assert.ok(peak - before < 128 * MiB, `RSS grew ${((peak - before) / MiB).toFixed(0)} MiB`);
    w.end();
    const c = await connect(s.socket, '1');
    assert.equal((await call(c, READ, 0, 512)).error, 0, 'a good client is served after');
    c.w.end();
  });

  await t.test('default --max-connections is 16: the 17th connection is closed at once', async () => {
    let held: Awaited<ReturnType<typeof connect>>[] = [];
    for (let attempt = 0; ; attempt++) {
      const tries = await Promise.allSettled(Array.from({ length: 16 }, () => connect(s.socket, '1')));
      held = tries.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      if (held.length === 16) break;
      for (const h of held) h.w.end();
      assert.ok(attempt < 50, 'sixteen connections fit within 10 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    const extra = await Wire.connect(s.socket);
    assert.ok(await extra.closedWithin(5000), 'the 17th connection is closed by the server');
    assert.match(s.stderr(), /16 connections already open/);
    for (const h of held) h.w.end();
  });

  await t.test('the server stops cleanly and the pool checks clean', async () => {
    const r = await s.stop();
    assert.equal(r.code, 0, r.stderr);
    thinsimOk(['check', pool]);
  });
});
