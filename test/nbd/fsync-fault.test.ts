/**
 * A real failed fsync under `thinsim serve` (issue 15): an LD_PRELOAD shim
 * (test/helpers/fault-fsync.c) makes one fdatasync of the pool's data file, or of its
 * metadata file, fail with EIO, as a disk whose writeback failed does. A raw-socket NBD
 * client then sees what qemu-nbd's clients see: the FLUSH fails, and so does every
 * later FLUSH and FUA write, although the file syncs fine again (Linux may have dropped
 * the dirty pages and marked them clean, so a later fsync proves nothing). The pool
 * turns read-only (reads and overwrites of mapped chunks only) and logs it; after the
 * server stops, `thinsim pool status` shows ro and needs_check, thin_check accepts the
 * metadata, and a new `thinsim serve` warns and keeps the pool read-only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { buildFaultShim } from '../helpers/fault-shim';
import { skipPart, tmpdir, tools09, tools1x } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import { call, connect, makePool, randomBytes, serve } from './helpers';

const READ = 0, WRITE = 1, FLUSH = 3;
const FUA = 1;
const EPERM = 1, EIO = 5;
const CHUNK = 64 * 1024;

for (const which of ['data', 'metadata'] as const) {
  test(`a failed fdatasync of the ${which} file: FLUSH fails, every later FLUSH and FUA write fails, the pool is ro with needs_check`, async (t) => {
    const d = tmpdir('thinsim-fsync-');
    t.after(() => d.cleanup());
    const shim = buildFaultShim(d.path);
    if ('skip' in shim) return t.skip(shim.skip);
    const pool = makePool(d.file('pool'), { 1: '16M' });
    // Chunk 2 is committed before the server starts: it must survive everything below.
    const kept = randomBytes(CHUNK, 2);
    const p = Pool.open(pool);
    await p.write(1, 2 * CHUNK, kept);
    await p.close();

    const arm = d.file('arm');
    const log = d.file('fault.log');
    const s = await serve(pool, d.path, [], undefined, shim.env(path.join(pool, which), arm, log));
    t.after(() => s.stop());
    const c = await connect(s.socket, '1');
    fs.writeFileSync(arm, '');
    assert.equal((await call(c, WRITE, 0, CHUNK, { payload: randomBytes(CHUNK, 3) })).error, 0, 'a write that provisions chunk 0');
    const first = await call(c, FLUSH, 0, 0);
    assert.equal(first.error, EIO, `the FLUSH during the fault fails with EIO: ${first.message}`);
    assert.match(fs.readFileSync(log, 'utf8'), new RegExp(`fdatasync\\(\\d+\\) on .*${which}: EIO`), 'the shim failed the sync once');
    for (let i = 0; i < 3; i++) {
      const r = await call(c, FLUSH, 0, 0);
      assert.equal(r.error, EIO, `FLUSH #${i + 2} after the fault fails too: ${r.message}`);
    }
    const over = randomBytes(CHUNK, 4);
    assert.equal((await call(c, WRITE, 2 * CHUNK, CHUNK, { payload: over })).error, 0, 'an overwrite of a mapped chunk still works');
    assert.equal((await call(c, WRITE, 2 * CHUNK, CHUNK, { payload: over, flags: FUA })).error, EIO, 'a FUA write is not acknowledged as durable');
    const back = await call(c, READ, 2 * CHUNK, CHUNK);
    assert.equal(back.error, 0);
    assert.ok(back.data!.equals(over), 'reads still work');
    assert.equal((await call(c, WRITE, 5 * CHUNK, 4096, { payload: randomBytes(4096, 5) })).error, EPERM, 'a write that provisions is refused (read-only)');
    c.w.end();
    const stopped = await s.stop();
    assert.match(stopped.stderr, /switching pool to read-only mode: .*failed/, 'the server logged the mode change');
    assert.equal(fs.readFileSync(log, 'utf8').trim().split('\n').length, 1, 'the fault fired once');

    const status = thinsimOk(['pool', 'status', pool]);
    assert.match(status, /^\s*mode: ro$/m, status);
    assert.match(status, /^\s*needs_check: needs_check$/m, status);
    for (const [name, tools] of [['thin_check 1.x', tools1x()], ['thin_check 0.9.0', tools09()]] as const) {
      if (!tools) { skipPart(t, name, 'not installed'); continue; }
      const r = tools.check(path.join(pool, 'metadata'));
      assert.equal(r.status, 0, `${name} accepts the metadata: ${r.stderr}${r.stdout}`);
    }
    // The rolled-back provisioning of chunk 0 was never durable; chunk 2 was committed.
    const ro = Pool.open(pool, { readOnly: true });
    try {
      assert.equal(ro.lookup(1, 0), undefined, 'the unflushed provisioning of chunk 0 was rolled back');
      assert.ok(ro.lookup(1, 2), 'chunk 2 is still mapped');
    } finally {
      await ro.close();
    }

    // A new server on the pool: it says so, and the pool stays read-only until repaired.
    const again = await serve(pool, d.path);
    t.after(() => again.stop());
    const c2 = await connect(again.socket, '1');
    assert.equal((await call(c2, FLUSH, 0, 0)).error, EIO, 'reopened: FLUSH still fails (needs_check)');
    assert.equal((await call(c2, WRITE, 6 * CHUNK, 4096, { payload: randomBytes(4096, 6) })).error, EPERM, 'reopened: no provisioning');
    assert.equal((await call(c2, READ, 2 * CHUNK, 16)).error, 0, 'reopened: reads work');
    c2.w.end();
    const out = await again.stop();
    assert.match(out.stderr, /warning: the pool is in ro mode: needs_check is set.*thin_check/, 'the new server warns');
  });
}
