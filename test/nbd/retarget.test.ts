/**
 * A fixed export pointed at no device, then at devices, then at none again
 * (ExportTable.retarget), driven by the raw test client over one connection that stays
 * open throughout, as nbdfuse's does under a spare loop device: while unbound it keeps
 * its size and every request fails with EIO; bound, it reads and writes exactly the
 * device it points at (checked against what the test wrote through the pool); a device of
 * another size is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from '../../src/pool/pool';
import { UNBOUND } from '../../src/nbd/exports';
import { NbdServer } from '../../src/nbd/server';
import { tmpdir } from '../helpers/oracle';
import { call, connect, MiB, randomBytes } from './helpers';

const READ = 0, WRITE = 1, FLUSH = 3;
const EIO = 5;

test('nbd: a fixed export follows retarget on an open connection', async (t) => {
  const d = tmpdir('thinsim-nbd-retarget-');
  const pool = Pool.create(d.file('pool'), { dataSize: 64 * MiB, metadataSize: 16 * MiB });
  await pool.createThin(1, 8 * MiB);
  await pool.createThin(2, 8 * MiB);
  await pool.createThin(3, 16 * MiB);
  const one = randomBytes(128 * 1024, 1);
  const two = randomBytes(128 * 1024, 2);
  await pool.write(1, 0, one);
  await pool.write(2, 0, two);
  const server = await NbdServer.start(pool, { socket: d.file('nbd.sock'), exports: [{ name: 'slot', id: UNBOUND, size: 8 * MiB }] });
  const s = await connect(d.file('nbd.sock'), 'slot', { structured: false });
  t.after(async () => {
    s.w.end();
    await server.shutdown();
    await pool.close();
  });
  assert.equal(s.size, BigInt(8 * MiB), 'an unbound export has its given size');
  assert.equal((await call(s, READ, 0, 4096)).error, EIO, 'a read of an unbound export fails with EIO');
  assert.equal((await call(s, WRITE, 0, 4096, { payload: Buffer.alloc(4096, 7) })).error, EIO, 'so does a write');

  server.exports.retarget('slot', 1);
  let r = await call(s, READ, 0, one.length);
  assert.equal(r.error, 0);
  assert.ok(r.data!.equals(one), 'device 1\'s bytes');

  server.exports.retarget('slot', 2);
  r = await call(s, READ, 0, two.length);
  assert.ok(r.data!.equals(two), 'device 2\'s bytes on the same connection');
  const w = randomBytes(64 * 1024, 3);
  assert.equal((await call(s, WRITE, MiB, w.length, { payload: w })).error, 0);
  assert.equal((await call(s, FLUSH, 0, 0)).error, 0);
  assert.ok((await pool.read(2, MiB, w.length)).equals(w), 'the write went to device 2');
  assert.ok((await pool.read(1, MiB, w.length)).equals(Buffer.alloc(w.length)), 'not to device 1');

  assert.throws(() => server.exports.retarget('slot', 3), (e: Error & { code?: string }) => e.code === 'E_INVALID' && /16777216 bytes, the export 8388608/.test(e.message));
  assert.throws(() => server.exports.retarget('nope', 1), (e: Error & { code?: string }) => e.code === 'E_INVALID' && /no such export/.test(e.message));
  r = await call(s, READ, 0, two.length);
  assert.ok(r.data!.equals(two), 'a refused retarget changes nothing');

  server.exports.retarget('slot', undefined);
  assert.equal((await call(s, READ, 0, 4096)).error, EIO, 'unbound again: EIO');
  assert.ok((await pool.read(2, 0, two.length)).equals(two), 'device 2 keeps its bytes');
});

test('nbd: an unbound export needs a size, and retarget needs a fixed table', async (t) => {
  const d = tmpdir('thinsim-nbd-retarget-');
  const pool = Pool.create(d.file('pool'), { dataSize: 64 * MiB, metadataSize: 16 * MiB });
  let all: NbdServer | undefined;
  t.after(async () => {
    await all?.shutdown();
    await pool.close();
  });
  await assert.rejects(NbdServer.start(pool, { socket: d.file('a.sock'), exports: [{ name: 'slot', id: UNBOUND }] }), (e: Error & { code?: string }) => e.code === 'E_INVALID' && /needs a size/.test(e.message));
  await pool.createThin(1, 8 * MiB);
  all = await NbdServer.start(pool, { socket: d.file('b.sock') });
  const every = all;
  assert.throws(() => every.exports.retarget('1', 1), (e: Error & { code?: string }) => e.code === 'E_INVALID' && /every device under its id/.test(e.message));
});
