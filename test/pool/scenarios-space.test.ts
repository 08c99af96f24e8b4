/**
 * Pool scenarios, space: data device resize, out of data space (error_if_no_space and
 * queue_if_no_space), reuse of blocks freed in the same transaction, devices whose size is not
 * a multiple of the chunk, low-water-mark events, and metadata exhaustion (read-only with
 * needs_check, committed state kept).
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
import * as fs from 'node:fs';
import { Pool } from '../../src/pool/pool';
import { Rand, pattern } from '../../support/random';
import {
  KiB, MiB, checkContent, dumpMatchesModel, metadataOracles, rejection, thinDump, verifyPool,
} from '../helpers/pool-model';
import { seeded, suiteSeeds } from '../helpers/seeds';
import { discard, fill, makePool, snap, thin, write } from './scenario-setup';

// ------------------------------------------------------------------------------ space

test('resize: growing the data device adds blocks; shrinking is refused with a clear error', async (t) => {
  const s = await makePool(t, { dataSize: 4 * MiB, errorIfNoSpace: true });
  await thin(s, 1, 16 * MiB);
  await fill(s, 1, 31, 0, 4 * MiB);
  assert.equal((await rejection(() => s.pool.write(1, 4 * MiB, pattern(1, 100)))).code, 'ENOSPC');
  await s.pool.resize({ dataSize: 8 * MiB });
  let st = s.pool.status();
  assert.equal(st.totalDataBlocks, 128);
  assert.equal(st.mode, 'rw');
  assert.equal(fs.statSync(st.dataFile).size, 8 * MiB);
  await fill(s, 1, 32, 4 * MiB, 8 * MiB);
  const e = await rejection(s.pool.resize({ dataSize: 4 * MiB }));
  assert.equal(e.code, 'E_UNSUPPORTED');
  assert.match(e.message, /shrink/);
  st = s.pool.status();
  assert.equal(st.totalDataBlocks, 128, 'a refused shrink changes nothing');
  assert.equal(fs.statSync(st.dataFile).size, 8 * MiB);
  await s.pool.resize({ metadataSize: 16 * MiB });
  assert.equal(s.pool.status().totalMetadataBlocks, 4096);
  assert.equal((await rejection(s.pool.resize({ metadataSize: 4 * MiB }))).code, 'E_UNSUPPORTED');
  const meta = st.metadataFile;
  await verifyPool(t, s.pool, s.model);
  const d = thinDump(t, meta);
  if (d) assert.equal(d.sb.nrDataBlocks, 128, 'thin_dump nr_data_blocks after the resize');
});

test('out of data space with error_if_no_space: ENOSPC at once; provisioned chunks stay writable', async (t) => {
  const s = await makePool(t, { dataSize: MiB, errorIfNoSpace: true }, { noSpaceTimeoutMs: 10_000, commitInterval: 0 });
  await thin(s, 1, 4 * MiB);
  await fill(s, 1, 41, 0, MiB);
  const t0 = Date.now();
  const e = await rejection(() => s.pool.write(1, MiB + 5, pattern(2, 7)));
  assert.equal(e.code, 'ENOSPC');
  assert.ok(Date.now() - t0 < 2000, `error_if_no_space waited ${Date.now() - t0} ms`);
  const st = s.pool.status();
  assert.equal(st.mode, 'out_of_data_space');
  assert.equal(st.noSpacePolicy, 'error_if_no_space');
  assert.match(st.line, / out_of_data_space .* error_if_no_space /);
  await write(s, 1, 3 * s.cb + 1, pattern(3, 2 * s.cb)); // overwrite in place
  assert.equal((await rejection(() => s.pool.write(1, 2 * MiB, pattern(4, 1)))).code, 'ENOSPC');
  await verifyPool(t, s.pool, s.model);
});

test('out of data space, queue_if_no_space: writes wait no_space_timeout then fail; a resize during the wait lets them through', async (t) => {
  const timeout = 600;
  const s = await makePool(t, { dataSize: MiB }, { noSpaceTimeoutMs: timeout, commitInterval: 0 });
  const modes: string[] = [];
  s.pool.on('mode', (m) => modes.push(m));
  await thin(s, 1, 4 * MiB);
  await fill(s, 1, 51, 0, MiB);
  let t0 = Date.now();
  const e = await rejection(() => s.pool.write(1, MiB, pattern(5, s.cb)));
  const waited = Date.now() - t0;
  assert.equal(e.code, 'ENOSPC');
  assert.ok(waited >= timeout - 50 && waited < timeout + 3000, `queued write failed after ${waited} ms, timeout ${timeout} ms`);
  assert.equal(s.pool.status().mode, 'out_of_data_space');
  assert.equal(s.pool.status().noSpacePolicy, 'queue_if_no_space');

  let settled = false;
  const data = pattern(6, s.cb);
  t0 = Date.now();
  const queued = s.pool.write(1, 2 * MiB, data).finally(() => { settled = true; });
  await new Promise((r) => setTimeout(r, timeout / 4));
  assert.equal(settled, false, 'the write waits for space');
  await s.pool.resize({ dataSize: 2 * MiB });
  await queued;
  s.model.write(1, 2 * MiB, data);
  assert.ok(Date.now() - t0 < timeout, 'the resize woke the queued write before its timeout');
  assert.equal(s.pool.status().mode, 'rw');
  assert.deepEqual(modes, ['out_of_data_space', 'rw']);
  await verifyPool(t, s.pool, s.model);
});

test('a full pool reuses blocks freed by discards in the same transaction (commit and retry), without ENOSPC', async (t) => {
  const s = await makePool(t, { dataSize: MiB, errorIfNoSpace: true }, { commitInterval: 0 });
  await thin(s, 1, 4 * MiB);
  await fill(s, 1, 61, 0, MiB);
  await discard(s, 1, 0, 4 * s.cb);
  assert.equal(s.pool.status().usedDataBlocks, 12);
  for (let v = 16; v < 20; v++) await write(s, 1, v * s.cb + 9, pattern(v, 100));
  assert.equal(s.pool.status().usedDataBlocks, 16);
  assert.equal(s.pool.status().mode, 'rw');
  assert.equal((await rejection(() => s.pool.write(1, 20 * s.cb, pattern(1, 1)))).code, 'ENOSPC');
  await verifyPool(t, s.pool, s.model);
});

test('thin devices whose size is not a multiple of the chunk: the last partial chunk works up to the size', async (t) => {
  const s = await makePool(t);
  const size = 3 * MiB + 512 * 3;
  await thin(s, 1, size);
  await write(s, 1, size - 700, pattern(1, 700));
  await write(s, 1, 3 * MiB - 10, pattern(2, 20));
  await snap(s, 2, 1);
  await write(s, 2, size - 1, Buffer.from([0xab]));
  await assert.rejects(Promise.resolve().then(() => s.pool.write(1, size - 1, Buffer.alloc(2))), { code: 'E_INVALID' });
  await assert.rejects(Promise.resolve().then(() => s.pool.read(1, size, 1)), { code: 'E_INVALID' });
  assert.equal(s.pool.thinStatus(1).highestMappedSector, 3 * MiB / 512 + s.cb / 512 - 1, 'the partial chunk maps a whole block');
  await discard(s, 1, 3 * MiB, size - 3 * MiB);
  await verifyPool(t, s.pool, s.model);
});

// ------------------------------------------------------------------------------ events

test('low-water-mark fires once when free data blocks cross it, again after a resize re-arms it', async (t) => {
  const s = await makePool(t, { dataSize: 4 * MiB, lowWaterMark: 10, errorIfNoSpace: true });
  const events: Array<{ free: number; lowWaterMark: number; after: number }> = [];
  let writes = 0;
  s.pool.on('low-water-mark', (e: { free: number; lowWaterMark: number }) => events.push({ ...e, after: writes }));
  await thin(s, 1, 16 * MiB);
  for (let v = 0; v < 64; v++) {
    await write(s, 1, v * s.cb, pattern(v, 512));
    writes++;
    if (writes === 53) assert.equal(events.length, 0, 'no event while more than 10 blocks are free');
    if (writes === 55) assert.equal(events.length, 1, 'the event fired when the free count reached the mark');
  }
  assert.equal(events.length, 1, 'exactly once while filling the pool');
  assert.ok(events[0].free <= 10 && events[0].free >= 9, `free at the event: ${events[0].free}`);
  assert.equal(events[0].lowWaterMark, 10);
  await s.pool.resize({ dataSize: 8 * MiB });
  for (let v = 64; v < 128; v++) {
    await write(s, 1, v * s.cb, pattern(v, 512));
    writes++;
  }
  assert.equal(events.length, 2, 'one more event after the resize');
  await verifyPool(t, s.pool, s.model);
});

test('a low-water-mark listener that reads the chunk just provisioned sees the write, on both data paths', async (t) => {
  for (const inlineIo of [true, false]) {
    const s = await makePool(t, { dataSize: 4 * MiB, lowWaterMark: 60 }, { inlineIo });
    await thin(s, 1, 16 * MiB);
    const seen: Array<Promise<Buffer>> = [];
    // The event fires while the write that crossed the mark is being done; a read issued
    // from the listener comes after that write, so it must see it.
    s.pool.on('low-water-mark', () => seen.push(s.pool.read(1, 3 * s.cb, 512)));
    for (let v = 0; v < 4; v++) await write(s, 1, v * s.cb, pattern(v, 512));
    assert.equal(seen.length, 1, `inlineIo ${inlineIo}: the event fired once`);
    assert.ok((await seen[0]).equals(pattern(3, 512)), `inlineIo ${inlineIo}: the listener's read saw the write`);
    await verifyPool(t, s.pool, s.model);
  }
});

// ------------------------------------------------------------------------------ metadata space

for (const seed of suiteSeeds(1, 6000)) {
  test(`metadata exhaustion: the pool turns read-only with needs_check; the committed state survives (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t, { dataSize: 256 * MiB, metadataSize: 96 * KiB }, { commitInterval: 0 });
      const modes: string[] = [];
      s.pool.on('mode', (m) => modes.push(m));
      await thin(s, 1, 256 * MiB);
      await thin(s, 2, 256 * MiB);
      const base = s.model.clone();
      const writes: Array<[number, number, Buffer]> = [];
      let flushed = 0;
      const used = new Set<string>();
      let failure: (Error & { code?: string }) | undefined;
      for (let i = 0; i < 20000 && !failure; i++) {
        // First writes only, so what is committed is exactly the writes up to the last flush.
        const id = 1 + r.int(2);
        let v: number;
        do v = r.int(4096); while (used.has(`${id}:${v}`));
        used.add(`${id}:${v}`);
        const data = pattern(r.int(2 ** 31), 1 + r.int(2000));
        const off = v * s.cb + r.int(s.cb - data.length);
        try {
          await s.pool.write(id, off, data);
          s.model.write(id, off, data);
          writes.push([id, off, data]);
          if (i % 4 === 3) {
            await s.pool.flush();
            flushed = writes.length;
          }
        } catch (e) {
          failure = e as Error & { code?: string };
        }
      }
      const committed = base;
      for (const [id, off, data] of writes.slice(0, flushed)) committed.write(id, off, data);
      assert.ok(failure, 'the metadata device ran out');
      assert.equal(failure.code, 'E_NO_METADATA_SPACE', failure.message);
      const st = s.pool.status();
      assert.equal(s.pool.mode, 'ro');
      assert.equal(st.mode, 'ro');
      assert.equal(st.needsCheck, true);
      assert.match(st.line, / ro .* needs_check /);
      assert.deepEqual(modes, ['ro']);
      assert.equal((await rejection(() => s.pool.write(1, 0, pattern(1, 10)))).code, 'E_READ_ONLY');
      assert.equal((await rejection(s.pool.createThin(9, MiB))).code, 'E_READ_ONLY');
      assert.ok(committed.usedBlocks() > 0, 'at least one commit happened before the exhaustion');
      // Reads still work and show the committed state.
      await checkContent(s.pool, committed, { label: 'read-only pool' });
      await s.pool.close();
      metadataOracles(t, st.metadataFile, 'after metadata exhaustion: ');
      dumpMatchesModel(t, st.metadataFile, st.dataFile, committed);
      const ro = Pool.open(s.dir, { readOnly: true });
      try {
        assert.equal(ro.status().needsCheck, true);
        await checkContent(ro, committed, { label: 'reopened read-only' });
      } finally {
        await ro.close();
      }
      const rw = Pool.open(s.dir);
      try {
        assert.equal(rw.mode, 'ro', 'a needs_check pool opens read-only');
        assert.equal((await rejection(() => rw.write(1, 0, pattern(1, 10)))).code, 'E_READ_ONLY');
      } finally {
        await rw.close();
      }
    });
  });
}
