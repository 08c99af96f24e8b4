/**
 * Closing a pool: requests issued after close() starts are refused with E_CLOSED, and a
 * write queued for data space (queue_if_no_space) fails at once with E_CLOSED instead of
 * holding close() for no_space_timeout; what was acknowledged before reads back.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';

const CHUNK = 64 * 1024;

test('close() fails writes waiting for space with E_CLOSED at once, and refuses new requests', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-close-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // 4 data blocks; writers wait up to 60 s for a resize.
  const pool = Pool.create(path.join(dir, 'p'), { dataSize: 4 * CHUNK, metadataSize: 1 << 20, noSpaceTimeout: 60 });
  await pool.createThin(1, 16 * CHUNK);
  const full = Buffer.alloc(4 * CHUNK, 0x5a);
  await pool.write(1, 0, full);
  await pool.flush();
  const waiting = pool.write(1, 4 * CHUNK, Buffer.alloc(CHUNK, 1));
  const outcome = waiting.then(() => 'written', (e) => e);
  // Let the write reach the space queue.
  for (let i = 0; i < 50 && pool.mode !== 'out_of_data_space'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(pool.mode, 'out_of_data_space');
  const t0 = Date.now();
  const closing = pool.close();
  await assert.rejects(pool.read(1, 0, 1), { code: 'E_CLOSED' });
  await closing;
  assert.ok(Date.now() - t0 < 10_000, `close() took ${Date.now() - t0} ms`);
  const e = await outcome;
  assert.equal((e as { code?: string }).code, 'E_CLOSED', `the queued write fails with E_CLOSED, got ${e}`);

  const again = Pool.open(path.join(dir, 'p'), { readOnly: true });
  try {
    assert.deepEqual(await again.read(1, 0, 4 * CHUNK), full, 'what was acknowledged reads back');
    assert.ok((await again.read(1, 4 * CHUNK, CHUNK)).every((b) => b === 0), 'the refused write left nothing');
  } finally {
    await again.close();
  }
});
