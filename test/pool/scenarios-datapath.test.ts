/**
 * Pool scenarios, data path: provisioning by linear and random writes, partial-chunk writes
 * at odd offsets, create/delete cycles (blocks given back, also after out of data space),
 * the set_transaction_id message, and the contract that data-path failures reject the
 * request rather than throw. This file also reports which metadata oracles are available.
 *
 * Every scenario drives a Pool and the in-memory ContentModel (test/helpers/pool-model.ts)
 * with the same operations (through ./scenario-setup), then compares every device's full
 * content, the mapped sectors and the used data blocks with the model, closes the pool and runs
 * checkMetadata, thin_check 1.x and 0.9.0 and thin_dump 1.x (mappings, sharing and the data
 * file's bytes) on the result. Scenarios follow the device-mapper-test-suite thinp tests and
 * thin-provisioning.rst. Randomised tests print their seed on failure; replay one with
 * THINSIM_SEED=<seed>.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { Rand, pattern } from '../../support/random';
import { KiB, MiB, oracleAvailability, rejection, thinDump, verifyPool } from '../helpers/pool-model';
import { seeded, suiteSeeds } from '../helpers/seeds';
import { del, discard, fill, makePool, range, snap, thin, write } from './scenario-setup';

oracleAvailability(test);

// ------------------------------------------------------------------------------ provisioning

test('provisioning: linear 1 MiB writes fill a thin device in order', async (t) => {
  const s = await makePool(t);
  await thin(s, 1, 16 * MiB);
  for (let off = 0; off < 16 * MiB; off += MiB) {
    await write(s, 1, off, pattern(off, MiB));
    assert.equal(s.pool.thinStatus(1).highestMappedSector, (off + MiB) / 512 - 1, 'highest mapped sector follows the linear writes');
  }
  assert.equal(s.pool.status().usedDataBlocks, (16 * MiB) / s.cb);
  await verifyPool(t, s.pool, s.model);
});

for (const blockSize of [128, 256, 2048]) {
  for (const seed of suiteSeeds(1, 1000 + blockSize)) {
    test(`provisioning: random writes, ${blockSize / 2} KiB blocks (seed ${seed})`, async (t) => {
      await seeded(t, seed, async () => {
        const r = new Rand(seed);
        const s = await makePool(t, { blockSize, dataSize: 128 * MiB });
        await thin(s, 1, 24 * MiB);
        await thin(s, 2, 8 * MiB);
        for (let i = 0; i < 120; i++) {
          const id = r.chance(0.7) ? 1 : 2;
          const [off, len] = range(r, s.model.size(id), r.chance(0.2) ? 3 * s.cb : 20 * KiB);
          await write(s, id, off, pattern(r.int(2 ** 31), len));
          if (r.chance(0.05)) await s.pool.flush();
        }
        await verifyPool(t, s.pool, s.model);
      });
    });
  }
}

// ------------------------------------------------------------------------------ create / delete

for (const seed of suiteSeeds(1, 2500)) {
  test(`create/delete cycles give every block back (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t);
      await thin(s, 1, 4 * MiB);
      await fill(s, 1, seed, 0, 2 * MiB);
      let next = 2;
      for (let cycle = 0; cycle < 25; cycle++) {
        const a = next++;
        if (r.chance(0.5)) {
          await thin(s, a, 4 * MiB);
        } else {
          await snap(s, a, r.pick(s.model.ids()));
        }
        for (let k = 0; k < 5; k++) {
          const [off, len] = range(r, 4 * MiB, 2 * s.cb);
          await write(s, a, off, pattern(r.int(2 ** 31), len));
        }
        const ids = s.model.ids();
        if (ids.length > 3) await del(s, r.pick(ids.filter((x) => x !== 1)));
        assert.equal(s.pool.status().usedDataBlocks, s.model.usedBlocks(), `used data blocks after cycle ${cycle}`);
      }
      for (const id of s.model.ids()) if (id !== 1) await del(s, id);
      assert.equal(s.pool.status().usedDataBlocks, s.model.usedBlocks());
      await verifyPool(t, s.pool, s.model);
    });
  });
}

test('delete after out of data space: the freed blocks are writable again and the pool leaves out_of_data_space', async (t) => {
  const s = await makePool(t, { dataSize: 2 * MiB, errorIfNoSpace: true });
  const modes: string[] = [];
  s.pool.on('mode', (m) => modes.push(m));
  await thin(s, 1, 4 * MiB);
  await fill(s, 1, 7, 0, 24 * s.cb);
  await snap(s, 2, 1);
  // Breaking sharing uses the 8 remaining blocks, then the pool is full.
  for (let v = 0; v < 8; v++) await write(s, 1, v * s.cb + 10, pattern(100 + v, 50));
  assert.equal(s.pool.status().usedDataBlocks, 32);
  const e = await rejection(() => s.pool.write(1, 8 * s.cb, pattern(1, 10)));
  assert.equal(e.code, 'ENOSPC');
  assert.equal(s.pool.status().mode, 'out_of_data_space');
  assert.deepEqual(modes, ['out_of_data_space']);
  await del(s, 2);
  assert.equal(s.pool.status().usedDataBlocks, 24, 'deleting the snapshot frees the 8 blocks only it used');
  // dm-thin.c commit() -> check_for_data_space(): a commit that finds free space returns the pool to write mode.
  assert.equal(s.pool.status().mode, 'rw', 'status mode after the delete freed space');
  for (let v = 24; v < 32; v++) await write(s, 1, v * s.cb, pattern(200 + v, s.cb));
  assert.equal(s.pool.status().usedDataBlocks, 32);
  await verifyPool(t, s.pool, s.model);
});

// ------------------------------------------------------------------------------ messages

test('set_transaction_id checks its first argument: a mismatch changes nothing', async (t) => {
  const s = await makePool(t);
  await s.pool.message(['create_thin', '1']);
  s.model.createThin(1, s.pool.deviceSize(1));
  assert.equal(s.pool.status().transactionId, 0);
  const e = await rejection(s.pool.setTransactionId(5, 6));
  assert.equal(e.code, 'E_TRANSACTION_MISMATCH');
  assert.equal(s.pool.status().transactionId, 0);
  await s.pool.message(['set_transaction_id', '0', '7']);
  assert.equal(s.pool.status().transactionId, 7);
  const e2 = await rejection(s.pool.message(['set_transaction_id', '0', '8']));
  assert.equal(e2.code, 'E_TRANSACTION_MISMATCH');
  await s.pool.flush();
  assert.equal(s.pool.status().transactionId, 7);
  assert.match(s.pool.status().line, /^7 /);
  await assert.rejects(s.pool.message(['set_transaction_id', '7']), { code: 'E_INVALID' });
  await assert.rejects(s.pool.message(['set_transaction_id', 'x', '8']), { code: 'E_INVALID' });
  await write(s, 1, 12345, pattern(8, 999));
  const meta = s.pool.status().metadataFile;
  await verifyPool(t, s.pool, s.model);
  const d = thinDump(t, meta);
  if (d) assert.equal(d.sb.transaction, 7, 'thin_dump transaction');
  const reopened = Pool.open(path.dirname(meta), { readOnly: true });
  try {
    assert.equal(reopened.status().transactionId, 7);
  } finally {
    await reopened.close();
  }
});

// ------------------------------------------------------------------------------ partial writes

for (const zero of [true, false]) {
  for (const seed of suiteSeeds(2, zero ? 4000 : 4100)) {
    test(`partial-chunk writes at odd offsets${zero ? '' : ', skip_block_zeroing'} (seed ${seed})`, async (t) => {
      await seeded(t, seed, async () => {
        const r = new Rand(seed);
        const s = await makePool(t, { zero, blockSize: r.pick([128, 256]) });
        await thin(s, 1, 6 * MiB);
        // Dirty some blocks, then free them, so unzeroed reuse would show stale bytes.
        await fill(s, 1, seed, 0, MiB);
        await discard(s, 1, 0, MiB);
        await s.pool.flush();
        for (let i = 0; i < 150; i++) {
          const crossing = r.chance(0.5);
          const base = r.int(Math.floor(6 * MiB / s.cb) - 2) * s.cb;
          const off = crossing ? base + s.cb - 1 - r.int(700) : base + 1 + r.int(s.cb - 800);
          const len = crossing ? 2 + r.int(1500) : 1 + r.int(700);
          await write(s, 1, off, pattern(r.int(2 ** 31), len));
          if (r.chance(0.05)) await snap(s, 100 + i, 1);
        }
        await verifyPool(t, s.pool, s.model);
      });
    });
  }
}

// ------------------------------------------------------------------------------ error contract

test('data-path failures reject the request (pool.ts contract) instead of throwing synchronously', async (t) => {
  const s = await makePool(t);
  await thin(s, 1, MiB);
  await s.pool.flush();
  const ro = Pool.open(s.dir, { readOnly: true });
  t.after(() => ro.close());
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    ['read of a missing device', () => s.pool.read(99, 0, 10), 'E_NO_DEVICE'],
    ['write of a missing device', () => s.pool.write(99, 0, Buffer.alloc(10)), 'E_NO_DEVICE'],
    ['discard of a missing device', () => s.pool.discard(99, 0, 10), 'E_NO_DEVICE'],
    ['read past the end', () => s.pool.read(1, MiB - 5, 10), 'E_INVALID'],
    ['write past the end', () => s.pool.write(1, MiB - 5, Buffer.alloc(10)), 'E_INVALID'],
    ['write on a read-only open', () => ro.write(1, 0, Buffer.alloc(10)), 'E_READ_ONLY'],
    ['discard on a read-only open', () => ro.discard(1, 0, 10), 'E_READ_ONLY'],
  ];
  const sync: string[] = [];
  for (const [what, fn, code] of cases) {
    let p: Promise<unknown>;
    try {
      p = fn();
    } catch (e) {
      sync.push(`${what}: threw ${(e as { code?: string }).code} synchronously`);
      continue;
    }
    await assert.rejects(p, { code }, what);
  }
  assert.deepEqual(sync, [], 'these failures must reject, not throw');
});
