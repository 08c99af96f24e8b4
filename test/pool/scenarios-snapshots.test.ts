/**
 * Pool scenarios, snapshots and sharing: break_sharing, pattern_stomp on either side, many
 * snapshots of one volume, recursive snapshots, and reserve/release_metadata_snap while writing
 * (thin_dump -m shows the state at the reserve).
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
import { Rand, pattern } from '../../support/random';
import { KiB, MiB, checkContent, metadataOracles, thinDump, verifyPool } from '../helpers/pool-model';
import { seeded, suiteSeeds } from '../helpers/seeds';
import { blockMap, dumpIds } from '../helpers/thin-model';
import { del, discard, fill, makePool, originAndSnapshot, range, snap, thin, write } from './scenario-setup';

// ------------------------------------------------------------------------------ sharing

for (const seed of suiteSeeds(2, 2000)) {
  test(`break_sharing: overwriting the origin leaves the snapshot's bytes (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await originAndSnapshot(t, seed);
      const before = s.pool.status().usedDataBlocks;
      assert.equal(before, 128, 'a snapshot shares every block');
      for (let i = 0; i < 60; i++) {
        const [off, len] = range(r, 8 * MiB, r.chance(0.3) ? 2 * s.cb : 8 * KiB);
        await write(s, 1, off, pattern(r.int(2 ** 31), len));
      }
      // Every chunk the origin rewrote now has its own block; the snapshot still has the old one.
      assert.equal(s.pool.status().usedDataBlocks, s.model.usedBlocks());
      assert.ok(s.model.usedBlocks() > before);
      await verifyPool(t, s.pool, s.model);
    });
  });
}

for (const side of ['origin', 'snapshot'] as const) {
  for (const seed of suiteSeeds(1, side === 'origin' ? 2100 : 2200)) {
    test(`pattern_stomp on the ${side}: stomped chunks change on one side only (seed ${seed})`, async (t) => {
      await seeded(t, seed, async () => {
        const r = new Rand(seed);
        const s = await originAndSnapshot(t, seed);
        const target = side === 'origin' ? 1 : 2;
        for (let i = 0; i < 40; i++) {
          const chunk = r.int(128);
          await write(s, target, chunk * s.cb, pattern(r.int(2 ** 31), s.cb));
          if (i % 10 === 9) await checkContent(s.pool, s.model, { label: `after stomp ${i}` });
        }
        await verifyPool(t, s.pool, s.model);
      });
    });
  }
}

for (const seed of suiteSeeds(1, 2300)) {
  test(`50 snapshots of one volume, with writes to the origin and the snapshots in between (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t);
      await thin(s, 1, 2 * MiB);
      await fill(s, 1, seed, 0, MiB);
      for (let i = 2; i <= 51; i++) {
        await snap(s, i, 1);
        for (let k = 0; k < 3; k++) {
          const [off, len] = range(r, 2 * MiB, s.cb + 100);
          await write(s, 1, off, pattern(r.int(2 ** 31), len));
        }
        if (r.chance(0.3)) {
          const [off, len] = range(r, 2 * MiB, 3000);
          await write(s, 2 + r.int(i - 1), off, pattern(r.int(2 ** 31), len));
        }
      }
      assert.equal(s.pool.devices().length, 51);
      await verifyPool(t, s.pool, s.model);
    });
  });
}

for (const seed of suiteSeeds(1, 2400)) {
  test(`recursive snapshots: a snapshot of a snapshot ... 12 deep, writing at each level (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t);
      await thin(s, 1, 4 * MiB);
      await fill(s, 1, seed);
      for (let level = 2; level <= 13; level++) {
        await snap(s, level, level - 1);
        for (let k = 0; k < 4; k++) {
          const [off, len] = range(r, 4 * MiB, 2 * s.cb);
          await write(s, level, off, pattern(r.int(2 ** 31), len));
        }
        // and the parent after it was snapshotted
        const [off, len] = range(r, 4 * MiB, 5000);
        await write(s, level - 1, off, pattern(r.int(2 ** 31), len));
        if (level % 4 === 0) await checkContent(s.pool, s.model, { label: `level ${level}` });
      }
      await verifyPool(t, s.pool, s.model);
    });
  });
}

// ------------------------------------------------------------------------------ metadata snapshot

for (const seed of suiteSeeds(1, 5000)) {
  test(`reserve/release_metadata_snap while writing: thin_dump -m shows the state at the reserve (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t);
      const meta = s.pool.status().metadataFile;
      await thin(s, 1, 8 * MiB);
      await thin(s, 2, 8 * MiB);
      const randomWrites = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const id = r.pick(s.model.ids());
          const [off, len] = range(r, 8 * MiB, 2 * s.cb);
          await write(s, id, off, pattern(r.int(2 ** 31), len));
        }
      };
      await randomWrites(40);
      await snap(s, 3, 1);
      await randomWrites(20);
      const inflight = Array.from({ length: 10 }, (_, i) => {
        const data = pattern(seed + i, 3000);
        return s.pool.write(2, i * s.cb + 77, data).then(() => s.model.write(2, i * s.cb + 77, data));
      });
      const held = await s.pool.reserveMetadataSnap();
      await Promise.all(inflight);
      const atReserve = s.model.clone();
      assert.ok(held > 0);
      assert.equal(s.pool.status().heldRoot, held);
      assert.match(s.pool.status().line, new RegExp(`^\\d+ \\d+/\\d+ \\d+/\\d+ ${held} `));
      await assert.rejects(s.pool.reserveMetadataSnap(), { code: 'E_METADATA_SNAP_EXISTS' });

      await randomWrites(40);
      await del(s, 2);
      await thin(s, 4, 8 * MiB);
      await snap(s, 5, 3);
      await randomWrites(30);
      await discard(s, 1, 0, 2 * MiB);
      await s.pool.flush();

      metadataOracles(t, meta, 'with a held metadata snapshot: ');
      const d = thinDump(t, meta, ['-m']);
      if (d) {
        // The reserve raced with in-flight writes to device 2; they are either in the snapshot or not.
        assert.deepEqual(dumpIds(d), atReserve.ids(), 'thin_dump -m device ids');
        for (const id of atReserve.ids()) {
          const got = [...blockMap(d, id)!.keys()].sort((a, b) => a - b);
          if (id === 2) {
            const want = new Set(atReserve.mapped(2));
            for (const v of got) assert.ok(want.has(v), `thin_dump -m: device 2 chunk ${v} was not mapped at the reserve`);
            for (const v of want) assert.ok(got.includes(v) || v < 10, `thin_dump -m: device 2 chunk ${v} missing`);
          } else {
            assert.deepEqual(got, atReserve.mapped(id), `thin_dump -m: mappings of device ${id} at the reserve`);
          }
        }
      }
      const live = thinDump(t, meta);
      if (live) assert.deepEqual(dumpIds(live), s.model.ids(), 'thin_dump (live) device ids');

      await s.pool.releaseMetadataSnap();
      assert.equal(s.pool.status().heldRoot, 0);
      await assert.rejects(s.pool.releaseMetadataSnap(), { code: 'E_NO_METADATA_SNAP' });
      await randomWrites(10);
      await verifyPool(t, s.pool, s.model);
    });
  });
}
