/**
 * Pool.blockStatus and Pool.lookup against a model of which chunks were written:
 * the runs cover the asked range exactly, in order, alternate mapped/unmapped, and
 * say "mapped" exactly where a chunk was provisioned; unmapped runs read as zeros.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { Pool } from '../../src/pool/pool';

const CHUNK = 64 * 1024;
const CHUNKS = 48;

test('blockStatus runs match the chunks a model says were written, for any range', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-bstat-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  await fc.assert(fc.asyncProperty(
    fc.array(fc.tuple(fc.nat(CHUNKS * CHUNK - 1), fc.integer({ min: 1, max: 3 * CHUNK })), { maxLength: 12 }),
    fc.array(fc.tuple(fc.nat(CHUNKS * CHUNK), fc.nat(CHUNKS * CHUNK)), { minLength: 1, maxLength: 6 }),
    async (writes, ranges) => {
      const pdir = fs.mkdtempSync(path.join(dir, 'p'));
      const pool = Pool.create(pdir, { dataSize: 8 << 20, metadataSize: 1 << 20 });
      try {
        await pool.createThin(1, CHUNKS * CHUNK);
        const written = new Set<number>();
        for (const [off, len0] of writes) {
          const len = Math.min(len0, CHUNKS * CHUNK - off);
          await pool.write(1, off, Buffer.alloc(len, 0xab));
          for (let c = Math.floor(off / CHUNK); c * CHUNK < off + len; c++) written.add(c);
        }
        for (let c = 0; c < CHUNKS; c++) assert.equal(pool.lookup(1, c) !== undefined, written.has(c), `lookup of chunk ${c}`);
        for (const [a, b] of ranges) {
          const from = Math.min(a, b);
          const len = Math.max(a, b) - from;
          const runs = pool.blockStatus(1, from, len);
          let pos = from;
          for (let i = 0; i < runs.length; i++) {
            const r = runs[i];
            assert.equal(r.offset, pos, 'runs are contiguous');
            assert.ok(r.length > 0, 'no empty runs');
            if (i > 0) assert.notEqual(r.mapped, runs[i - 1].mapped, 'neighbouring runs differ');
            for (let byte = r.offset; byte < r.offset + r.length; byte += Math.min(CHUNK, r.offset + r.length - byte) || 1) {
              assert.equal(r.mapped, written.has(Math.floor(byte / CHUNK)), `byte ${byte} mapped`);
            }
            if (!r.mapped) assert.ok((await pool.read(1, r.offset, r.length)).every((x) => x === 0), 'unmapped reads zeros');
            pos += r.length;
          }
          assert.equal(pos, from + len, 'runs cover the range');
        }
      } finally {
        await pool.close();
        fs.rmSync(pdir, { recursive: true, force: true });
      }
    },
  ), { numRuns: 25 });
});

test('blockStatus refuses a range past the end and a missing device', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-bstat-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pool = Pool.create(path.join(dir, 'p'), { dataSize: 8 << 20, metadataSize: 1 << 20 });
  try {
    await pool.createThin(1, CHUNK * 4);
    assert.throws(() => pool.blockStatus(1, CHUNK * 4 - 1, 2), { code: 'E_INVALID' });
    assert.throws(() => pool.blockStatus(2, 0, 1), { code: 'E_NO_DEVICE' });
    assert.throws(() => pool.lookup(2, 0), { code: 'E_NO_DEVICE' });
    assert.deepEqual(pool.blockStatus(1, 0, 0), []);
  } finally {
    await pool.close();
  }
});
