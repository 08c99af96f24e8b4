/**
 * The NBD server used as a library (NbdServer.start on an open Pool), driven by the raw
 * test client, for behaviour real tools do not reach on demand:
 * - queue_if_no_space: writes wait for space (the engine's policy), replies complete out of
 *   order with cookies echoed, the session stops reading at its in-flight cap (the client's
 *   unsent bytes pile up on its side), and a resize lets everything finish;
 * - error_if_no_space: ENOSPC;
 * - a device deleted while a client is connected: EIO, and the server goes on;
 * - WRITE_ZEROES with and without NO_HOLE / FAST_ZERO, and under ignore_discard;
 * - FUA and FLUSH (on another connection: CAN_MULTI_CONN) make writes visible to a
 *   read-only open of the committed metadata;
 * - meta contexts: LIST, REQ_ONE, and contexts that do not carry over to another export.
 * Expected mappings come from what the test wrote, not from the server.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { isLoopback, NbdServer, parseListen, preferredBlockSize } from '../../src/nbd/server';
import { tmpdir } from '../helpers/oracle';
import {
  call, connect, hello, MiB, optionBytes, randomBytes, readOptReply, readReply, requestBytes, Wire,
} from './helpers';

const READ = 0, WRITE = 1, FLUSH = 3, TRIM = 4, WRITE_ZEROES = 6, BLOCK_STATUS = 7;
const FUA = 1, NO_HOLE = 2, REQ_ONE = 8, FAST_ZERO = 16;
const EIO = 5, ENOSPC = 28, ENOTSUP = 95;
const CHUNK = 65536;

async function setup(t: { after(fn: () => unknown): void }, create: Parameters<typeof Pool.create>[1], thins: Record<number, number>, serveOpts: Parameters<typeof NbdServer.start>[1] = {}) {
  const d = tmpdir('thinsim-nbd-lib-');
  const dir = d.file('pool');
  const pool = Pool.create(dir, { metadataSize: 16 * MiB, ...create });
  for (const [id, size] of Object.entries(thins)) await pool.createThin(Number(id), size);
  const socket = d.file('nbd.sock');
  const server = await NbdServer.start(pool, { socket, ...serveOpts });
  t.after(async () => {
    await server.shutdown();
    await pool.close();
    d.cleanup();
  });
  return { dir, pool, server, socket };
}

/** Mapped chunk runs [offset, length] of the committed metadata, as another process would see them. */
async function committedRuns(dir: string, id: number, size: number): Promise<Array<[number, number]>> {
  const ro = Pool.open(dir, { readOnly: true });
  try {
    return ro.blockStatus(id, 0, size).filter((r) => r.mapped).map((r) => [r.offset, r.length]);
  } finally {
    await ro.close();
  }
}

test('queue_if_no_space: writes wait, replies come out of order, the session stops reading at its cap, resize frees them', async (t) => {
  // 16 data blocks: the 17th chunk written has to wait for space.
  const { pool, socket } = await setup(t, { dataSize: 16 * CHUNK, noSpaceTimeout: 60 }, { 1: 64 * MiB }, {
    limits: { maxInflightRequests: 8, maxInflightBytes: 32 * MiB },
  });
  const c = await connect(socket, '1');
  for (let i = 0; i < 16; i++) assert.equal((await call(c, WRITE, i * CHUNK, 16, { payload: Buffer.alloc(16, i + 1) })).error, 0);
  // Writes of whole chunks to unprovisioned chunks: each must wait for space.
  const payload = randomBytes(CHUNK, 1);
  const stuck = (i: number) => requestBytes(WRITE, 0, BigInt(1000 + i), (100 + i) * CHUNK, CHUNK, payload);
  for (let i = 0; i < 3; i++) c.w.write(stuck(i));
  // A read sent after them is answered before them: replies complete out of order.
  c.w.write(requestBytes(READ, 0, 77n, 3 * CHUNK, 16));
  const first = await readReply(c.w, () => 16);
  assert.equal(first.cookie, 77n, 'the read overtakes the waiting writes');
  assert.deepEqual(first.data, Buffer.alloc(16, 4));
  assert.equal(pool.mode, 'out_of_data_space');
  // 37 more: the cap (8 in flight) is reached and the server stops reading this socket,
  // so a read sent behind them is neither read nor answered.
  for (let i = 3; i < 40; i++) c.w.write(stuck(i));
  c.w.write(requestBytes(READ, 0, 78n, 5 * CHUNK, 16));
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(c.w.sock.writableLength > 20 * CHUNK, `the server stopped reading: ${c.w.sock.writableLength} bytes are still queued in the client`);
  await assert.rejects(c.w.read(1, 300), /timed out/, 'no reply while the writes wait');
  // Another connection is not held up by this one.
  const c2 = await connect(socket, '1');
  assert.deepEqual((await call(c2, READ, 5 * CHUNK, 16)).data, Buffer.alloc(16, 6));
  c2.w.end();
  await pool.resize({ dataSize: 128 * CHUNK });
  const seen = new Map<bigint, number>();
  for (let i = 0; i < 41; i++) {
    const r = await readReply(c.w, (cookie) => (cookie === 78n ? 16 : 0));
    assert.ok(!seen.has(r.cookie), 'every cookie once');
    seen.set(r.cookie, r.error);
    if (r.cookie === 78n) assert.deepEqual(r.data, Buffer.alloc(16, 6));
  }
  assert.deepEqual([...seen.keys()].sort((a, b) => Number(a - b)), [78n, ...Array.from({ length: 40 }, (_, i) => BigInt(1000 + i))]);
  assert.ok([...seen.values()].every((e) => e === 0), 'every write succeeded after the resize');
  for (let i = 0; i < 40; i += 13) assert.deepEqual((await call(c, READ, (100 + i) * CHUNK, CHUNK)).data, payload);
  c.w.end();
});

test('error_if_no_space: ENOSPC, and the session goes on', async (t) => {
  const { socket } = await setup(t, { dataSize: 4 * CHUNK, errorIfNoSpace: true }, { 1: 16 * MiB });
  const c = await connect(socket, '1');
  for (let i = 0; i < 4; i++) assert.equal((await call(c, WRITE, i * CHUNK, 1, { payload: Buffer.from([i]) })).error, 0);
  const r = await call(c, WRITE, 10 * CHUNK, 1, { payload: Buffer.from([9]) });
  assert.equal(r.error, ENOSPC, r.message);
  assert.equal((await call(c, WRITE, 2 * CHUNK + 5, 3, { payload: Buffer.from('abc') })).error, 0, 'provisioned chunks stay writable');
  c.w.end();
});

test('a device deleted while a client is connected: EIO, and the server goes on', async (t) => {
  const { pool, socket } = await setup(t, { dataSize: 64 * CHUNK }, { 1: 4 * MiB, 2: 4 * MiB });
  const c = await connect(socket, '2');
  assert.equal((await call(c, WRITE, 0, 4, { payload: Buffer.from('abcd') })).error, 0);
  await pool.deleteDevice(2);
  for (const [type, len, payload] of [[READ, 4, undefined], [WRITE, 4, Buffer.from('wxyz')], [TRIM, CHUNK, undefined], [BLOCK_STATUS, CHUNK, undefined], [WRITE_ZEROES, CHUNK, undefined]] as const) {
    const r = await call(c, type, 0, len, { payload });
    assert.equal(r.error, EIO, `command ${type} on a deleted device: EIO (${r.message})`);
  }
  assert.equal((await call(c, FLUSH, 0, 0)).error, 0);
  c.w.end();
  const w = await Wire.connect(socket);
  await hello(w);
  w.write(optionBytes(3));
  const names: string[] = [];
  for (;;) {
    const r = await readOptReply(w);
    if (r.type === 1) break;
    names.push(r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
  }
  assert.deepEqual(names, ['1'], 'LIST no longer offers the deleted device');
  w.end();
  const c1 = await connect(socket, '1');
  assert.equal((await call(c1, READ, 0, 4)).error, 0);
  c1.w.end();
});

test('WRITE_ZEROES: unmap whole chunks, NO_HOLE writes zeros, FAST_ZERO fails early with ENOTSUP', async (t) => {
  const { socket } = await setup(t, { dataSize: 256 * CHUNK }, { 1: 4 * MiB });
  const c = await connect(socket, '1');
  const map = async () => (await call(c, BLOCK_STATUS, 0, 4 * MiB)).extents;
  const ones = Buffer.alloc(8 * CHUNK, 1);
  assert.equal((await call(c, WRITE, 0, ones.length, { payload: ones })).error, 0);
  // Zero [CHUNK/2, 3.5 CHUNK): chunks 1 and 2 whole (unmapped), halves of 0 and 3 (zeroed, kept).
  assert.equal((await call(c, WRITE_ZEROES, CHUNK / 2, 3 * CHUNK)).error, 0);
  assert.deepEqual(await map(), [{ length: CHUNK, flags: 0 }, { length: 2 * CHUNK, flags: 3 }, { length: 5 * CHUNK, flags: 0 }, { length: 4 * MiB - 8 * CHUNK, flags: 3 }]);
  const r = await call(c, READ, 0, 8 * CHUNK);
  const expect = Buffer.from(ones);
  expect.fill(0, CHUNK / 2, CHUNK / 2 + 3 * CHUNK);
  assert.deepEqual(r.data, expect);
  // NO_HOLE: zeros are written, chunks become (or stay) provisioned.
  assert.equal((await call(c, WRITE_ZEROES, 16 * CHUNK, 2 * CHUNK, { flags: NO_HOLE })).error, 0);
  assert.deepEqual((await call(c, BLOCK_STATUS, 16 * CHUNK, 2 * CHUNK)).extents, [{ length: 2 * CHUNK, flags: 0 }]);
  assert.ok((await call(c, READ, 16 * CHUNK, 2 * CHUNK)).data!.every((b) => b === 0));
  // FAST_ZERO with NO_HOLE would mean writing: refused, and nothing changes.
  const before = await map();
  const fz = await call(c, WRITE_ZEROES, 4 * CHUNK, 2 * CHUNK, { flags: NO_HOLE | FAST_ZERO });
  assert.equal(fz.error, ENOTSUP, fz.message);
  assert.deepEqual(await map(), before);
  assert.deepEqual((await call(c, READ, 4 * CHUNK, 4)).data, Buffer.alloc(4, 1), 'data untouched');
  // FAST_ZERO without NO_HOLE: unmapping is fast.
  assert.equal((await call(c, WRITE_ZEROES, 4 * CHUNK, 2 * CHUNK, { flags: FAST_ZERO | FUA })).error, 0);
  assert.deepEqual((await call(c, BLOCK_STATUS, 4 * CHUNK, 2 * CHUNK)).extents, [{ length: 2 * CHUNK, flags: 3 }]);
  // REQ_ONE: one extent only.
  const one = await call(c, BLOCK_STATUS, 0, 4 * MiB, { flags: REQ_ONE });
  assert.deepEqual(one.extents, [{ length: CHUNK, flags: 0 }]);
  c.w.end();
});

test('WRITE_ZEROES when the pool ignores discards: zeros are written; FAST_ZERO only where nothing is mapped', async (t) => {
  const { socket } = await setup(t, { dataSize: 64 * CHUNK, discard: 'ignore' }, { 1: 4 * MiB });
  const c = await connect(socket, '1');
  assert.equal((await call(c, WRITE, 0, 2 * CHUNK, { payload: Buffer.alloc(2 * CHUNK, 7) })).error, 0);
  assert.equal((await call(c, WRITE_ZEROES, 0, 2 * CHUNK, { flags: FAST_ZERO })).error, ENOTSUP, 'mapped data would need writing');
  assert.equal((await call(c, WRITE_ZEROES, 8 * CHUNK, 2 * CHUNK, { flags: FAST_ZERO })).error, 0, 'already unmapped: nothing to do');
  assert.equal((await call(c, WRITE_ZEROES, 0, 2 * CHUNK)).error, 0);
  assert.ok((await call(c, READ, 0, 2 * CHUNK)).data!.every((b) => b === 0), 'zeroed although discards are ignored');
  assert.equal((await call(c, TRIM, 0, 2 * CHUNK)).error, 0, 'TRIM is accepted (and ignored)');
  c.w.end();
});

test('FUA and a FLUSH on another connection make completed writes durable (CAN_MULTI_CONN)', async (t) => {
  // No periodic commit: only FUA / FLUSH commit.
  const d = tmpdir('thinsim-nbd-lib-');
  const dir = d.file('pool');
  const created = Pool.create(dir, { dataSize: 64 * CHUNK, metadataSize: 16 * MiB });
  await created.createThin(1, 4 * MiB);
  await created.close();
  const pool = Pool.open(dir, { commitInterval: 0 });
  const server = await NbdServer.start(pool, { socket: path.join(d.path, 's') });
  t.after(async () => { await server.shutdown(); await pool.close(); d.cleanup(); });
  const a = await connect(path.join(d.path, 's'), '1');
  const b = await connect(path.join(d.path, 's'), '1');
  assert.ok(a.flags & 0x100, 'CAN_MULTI_CONN is advertised');
  assert.equal((await call(a, WRITE, 0, 10, { payload: Buffer.alloc(10, 1) })).error, 0);
  assert.deepEqual(await committedRuns(dir, 1, 4 * MiB), [], 'a plain write is not committed yet');
  assert.equal((await call(a, WRITE, 3 * CHUNK, 10, { payload: Buffer.alloc(10, 2), flags: FUA })).error, 0);
  assert.deepEqual(await committedRuns(dir, 1, 4 * MiB), [[0, CHUNK], [3 * CHUNK, CHUNK]], 'FUA committed both');
  assert.equal((await call(a, WRITE, 7 * CHUNK, 10, { payload: Buffer.alloc(10, 3) })).error, 0);
  assert.equal((await call(b, FLUSH, 0, 0)).error, 0);
  assert.deepEqual(await committedRuns(dir, 1, 4 * MiB), [[0, CHUNK], [3 * CHUNK, CHUNK], [7 * CHUNK, CHUNK]], 'FLUSH on b covers a\'s write');
  a.w.end();
  b.w.end();
});

test('meta contexts: LIST, SET for one export does not carry over to GO on another', async (t) => {
  const { socket } = await setup(t, { dataSize: 64 * CHUNK }, { 1: MiB, 2: MiB });
  const str32 = (s: string) => { const b = Buffer.from(s); const l = Buffer.alloc(4); l.writeUInt32BE(b.length); return Buffer.concat([l, b]); };
  const w = await Wire.connect(socket);
  await hello(w);
  w.write(optionBytes(8));
  assert.equal((await readOptReply(w)).type, 1);
  for (const queries of [[], ['base:'], ['base:allocation'], ['qemu:dirty-bitmap:x']]) {
    const q = Buffer.concat([str32('1'), Buffer.from([0, 0, 0, queries.length]), ...queries.map(str32)]);
    w.write(optionBytes(9, q));
    const names: string[] = [];
    for (;;) {
      const r = await readOptReply(w);
      if (r.type === 1) break;
      assert.equal(r.type, 4);
      names.push(r.data.subarray(4).toString());
    }
    assert.deepEqual(names, queries[0]?.startsWith('qemu') ? [] : ['base:allocation'], `LIST ${JSON.stringify(queries)}`);
  }
  w.write(optionBytes(10, Buffer.concat([str32('1'), Buffer.from([0, 0, 0, 1]), str32('base:allocation')])));
  assert.equal((await readOptReply(w)).type, 4);
  assert.equal((await readOptReply(w)).type, 1);
  w.write(optionBytes(7, Buffer.concat([str32('2'), Buffer.from([0, 0])])));
  for (;;) { const r = await readOptReply(w); if (r.type === 1) break; }
  w.write(requestBytes(BLOCK_STATUS, 0, 1n, 0, 4096));
  assert.equal((await readReply(w)).error, 22, 'contexts selected for export 1 do not apply to export 2');
  w.end();
});

test('listen addresses, the loopback check and the preferred block size', () => {
  assert.deepEqual(parseListen('127.0.0.1:10809'), { host: '127.0.0.1', port: 10809 });
  assert.deepEqual(parseListen('localhost'), { host: 'localhost', port: 10809 });
  assert.deepEqual(parseListen(':0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('4000'), { host: '127.0.0.1', port: 4000 });
  assert.deepEqual(parseListen('[::1]:7'), { host: '::1', port: 7 });
  assert.throws(() => parseListen('::1'), /brackets/);
  assert.throws(() => parseListen('127.0.0.1:70000'), /port/);
  assert.throws(() => parseListen('127.0.0.1:x'), /port/);
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '10.0.0.1', '::', '192.168.1.1', 'example.com', '128.0.0.1']) assert.ok(!isLoopback(h), h);
  // A power of two (NBD requires it) that divides the chunk, at most 32 MiB.
  assert.equal(preferredBlockSize(64 * 1024), 64 * 1024);
  assert.equal(preferredBlockSize(192 * 1024), 64 * 1024);
  assert.equal(preferredBlockSize(1024 * 1024 * 1024), 32 * 1024 * 1024);
});

test('a non-loopback address is warned about (192.0.2.1 is TEST-NET: nothing is ever bound there)', async (t) => {
  const d = tmpdir('thinsim-nbd-lib-');
  t.after(() => d.cleanup());
  const pool = Pool.create(d.file('pool'), { dataSize: 16 * CHUNK, metadataSize: 16 * MiB });
  t.after(() => pool.close());
  const lines: string[] = [];
  await assert.rejects(NbdServer.start(pool, { listen: '192.0.2.1:0', log: (m) => lines.push(m) }), /cannot listen on 192\.0\.2\.1:0/);
  assert.ok(lines.some((l) => /warning: listening on 192\.0\.2\.1, which is not a loopback address/.test(l)), lines.join('\n'));
  const quiet: string[] = [];
  const s = await NbdServer.start(pool, { listen: '127.0.0.1:0', log: (m) => quiet.push(m) });
  assert.match(s.uri(), /^nbd:\/\/127\.0\.0\.1:\d+\/$/);
  await s.shutdown();
  assert.deepEqual(quiet, [], 'no warning on loopback');
});
