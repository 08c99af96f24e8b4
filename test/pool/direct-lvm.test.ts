/**
 * The direct-lvm backend: data I/O with O_DIRECT through aligned buffers, on preallocated
 * files and (when `losetup` works here) on loop block devices. The same model scenarios as
 * scenarios-*.test.ts (provisioning, break_sharing, partial-chunk writes at odd offsets), then
 * every device read back, checkMetadata, thin_check 1.x / 0.9.0 and thin_dump + the data
 * device's bytes. Without the native addon (THINSIM_NO_NATIVE=1, or not built) direct-lvm
 * cannot run: those tests skip with the reason.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hot, loadError } from '../../src/hot';
import { Pool, type CreateOptions } from '../../src/pool/pool';
import { Rand, pattern } from '../../support/random';
import { ContentModel, KiB, MiB, checkContent, oracleAvailability, tempDir, verifyPool } from '../helpers/pool-model';
import { seeded, suiteSeeds } from '../helpers/seeds';

function directSkip(): string | false {
  if (!hot.native) return `direct-lvm needs the native addon for O_DIRECT aligned buffers: ${loadError}`;
  const probe = path.join(os.tmpdir(), `thinsim-odirect-${process.pid}`);
  try {
    fs.writeFileSync(probe, Buffer.alloc(4096));
    fs.closeSync(fs.openSync(probe, fs.constants.O_RDWR | fs.constants.O_DIRECT));
    return false;
  } catch (e) {
    return `${os.tmpdir()} does not support O_DIRECT: ${(e as Error).message}`;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

const SKIP = directSkip();

/** provisioning (linear + random), break_sharing and odd partial writes, each step checked against the model. */
async function scenarios(pool: Pool, zero: boolean, seed: number): Promise<ContentModel> {
  const r = new Rand(seed);
  const m = new ContentModel(pool.chunkBytes, { zero });
  const cb = pool.chunkBytes;
  const w = async (id: number, off: number, data: Buffer) => {
    await pool.write(id, off, data);
    m.write(id, off, data);
  };
  await pool.createThin(1, 8 * MiB);
  m.createThin(1, 8 * MiB);
  await pool.createThin(2, 4 * MiB);
  m.createThin(2, 4 * MiB);
  // provisioning: linear, then random at any alignment
  for (let off = 0; off < 4 * MiB; off += 512 * KiB) await w(1, off, pattern(seed + off, 512 * KiB));
  for (let i = 0; i < 60; i++) {
    const id = 1 + r.int(2);
    const size = m.size(id);
    const len = 1 + r.int(r.chance(0.3) ? 2 * cb : 9000);
    await w(id, r.int(size - len + 1), pattern(r.int(2 ** 31), len));
  }
  await checkContent(pool, m, { label: 'after provisioning' });
  // break_sharing
  await pool.createSnap(3, 1);
  m.createSnap(3, 1);
  for (let i = 0; i < 40; i++) {
    const len = 1 + r.int(r.chance(0.3) ? 2 * cb : 5000);
    await w(1, r.int(8 * MiB - len + 1), pattern(r.int(2 ** 31), len));
  }
  await checkContent(pool, m, { label: 'after break_sharing' });
  // partial-chunk writes at odd offsets, some crossing chunk boundaries, on unmapped chunks too
  for (let i = 0; i < 80; i++) {
    const base = (1 + r.int(8 * MiB / cb - 2)) * cb;
    const off = r.chance(0.5) ? base - 1 - r.int(3000) : base + 1 + r.int(cb - 4000);
    await w(r.pick([1, 3]), off, pattern(r.int(2 ** 31), 1 + r.int(3500)));
  }
  await pool.discard(2, 4097, 3 * cb);
  m.discard(2, 4097, 3 * cb);
  return m;
}

oracleAvailability(test);

for (const zero of [true, false]) {
  for (const seed of suiteSeeds(1, zero ? 9000 : 9100)) {
    test(`direct-lvm on preallocated files: provisioning, break_sharing, partial writes${zero ? '' : ' (skip_block_zeroing)'} (seed ${seed})`, { skip: SKIP }, async (t) => {
      await seeded(t, seed, async () => {
        const dir = tempDir(t);
        const opts: CreateOptions = { mode: 'direct-lvm', dataSize: 64 * MiB, metadataSize: 8 * MiB, zero, blockSize: zero ? 128 : 256 };
        const pool = Pool.create(dir, opts);
        t.after(() => pool.close().catch(() => undefined));
        assert.equal(pool.data.direct, true, 'the data device is opened with O_DIRECT');
        const st = pool.status();
        assert.equal(st.backend, 'direct-lvm');
        assert.ok(fs.statSync(st.dataFile).blocks * 512 >= 64 * MiB, 'direct-lvm preallocates the data file');
        const m = await scenarios(pool, zero, seed);
        await verifyPool(t, pool, m);
        // Reopened, the same content.
        const again = Pool.open(dir, { readOnly: true });
        try {
          await checkContent(again, m, { label: 'reopened' });
        } finally {
          await again.close();
        }
      });
    });
  }
}

// ------------------------------------------------------------------------------ loop devices

function loopSkip(): string | false {
  if (SKIP) return SKIP;
  const r = spawnSync('losetup', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `losetup not available: ${r.error?.message ?? r.stderr.trim()}`;
  return false;
}

function attach(file: string): string | Error {
  const r = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return new Error(r.error?.message ?? r.stderr.trim());
  return r.stdout.trim();
}

test('direct-lvm on loop devices (data and metadata are block devices)', { skip: loopSkip() }, async (t) => {
  const dir = tempDir(t);
  const backing = tempDir(t, 'thinsim-loop-');
  const files = { data: path.join(backing, 'data.img'), meta: path.join(backing, 'meta.img') };
  fs.writeFileSync(files.data, '');
  fs.truncateSync(files.data, 64 * MiB);
  fs.writeFileSync(files.meta, '');
  fs.truncateSync(files.meta, 8 * MiB);
  const loops: string[] = [];
  t.after(() => {
    for (const l of loops) spawnSync('losetup', ['-d', l]);
  });
  for (const f of [files.data, files.meta]) {
    const l = attach(f);
    if (l instanceof Error) {
      t.skip(`losetup -f --show does not work here: ${l.message}`);
      return;
    }
    loops.push(l);
  }
  const [dataDev, metadataDev] = loops;
  assert.ok(fs.statSync(dataDev).isBlockDevice());
  const pool = Pool.create(dir, { mode: 'direct-lvm', dataDev, metadataDev });
  t.after(() => pool.close().catch(() => undefined));
  assert.equal(pool.data.isBlockDevice, true);
  assert.equal(pool.status().totalDataBlocks, 64 * MiB / pool.chunkBytes, 'the data size comes from the block device');
  assert.equal(pool.status().totalMetadataBlocks, 8 * MiB / 4096);
  const m = await scenarios(pool, true, 9200);
  await assert.rejects(pool.resize({ dataSize: 128 * MiB }), { code: 'E_UNSUPPORTED' }, 'a block device cannot be grown by the pool');
  await verifyPool(t, pool, m);
});
