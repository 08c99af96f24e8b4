/**
 * thin import / export: sparse-aware both ways. The expectation is the image itself
 * (bytes) and its zero chunks (which must stay unmapped), not the code's own output.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Pool } from '../../src/pool/pool';
import { exportImage, importImage } from '../../src/pool/image';

const CHUNK = 64 * 1024;
const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'thinsim.js');

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-image-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** An image of `chunks` chunks plus a partial tail; chunk i is data when `data(i)`, else zeros. */
function makeImage(file: string, chunks: number, tail: number, data: (i: number) => boolean): Buffer {
  const img = Buffer.alloc(chunks * CHUNK + tail);
  for (let i = 0; i <= chunks; i++) {
    if (!data(i)) continue;
    const end = Math.min((i + 1) * CHUNK, img.length);
    for (let o = i * CHUNK; o < end; o++) img[o] = (o * 31 + i) & 0xff || 1;
  }
  fs.writeFileSync(file, img);
  return img;
}

test('import leaves zero chunks unmapped and reads back the image; export writes it back sparse', async (t) => {
  const dir = tmp(t);
  const pool = Pool.create(path.join(dir, 'pool'), { dataSize: 64 << 20, metadataSize: 4 << 20 });
  try {
    await pool.createThin(1, 4 << 20);
    const file = path.join(dir, 'in.img');
    const dataChunk = (i: number) => i % 3 === 0 || i === 20; // chunk 20 is the partial tail
    const img = makeImage(file, 20, 1000, dataChunk);
    const r = await importImage(pool, 1, file);
    const expectMapped = Array.from({ length: 21 }, (_, i) => i).filter(dataChunk).length;
    assert.equal(r.written, expectMapped);
    assert.equal(pool.thinStatus(1).mappedSectors, expectMapped * (CHUNK / 512), 'only non-zero chunks are provisioned');
    assert.deepEqual(await pool.read(1, 0, img.length), img);

    // Re-import where a mapped chunk is now zero: it is unmapped again.
    img.fill(0, 0, CHUNK);
    fs.writeFileSync(file, img);
    await importImage(pool, 1, file);
    assert.equal(pool.thinStatus(1).mappedSectors, (expectMapped - 1) * (CHUNK / 512));
    assert.deepEqual(await pool.read(1, 0, img.length), img);

    const out = path.join(dir, 'out.img');
    await exportImage(pool, 1, out);
    const got = fs.readFileSync(out);
    assert.equal(got.length, 4 << 20, 'export is the device size');
    assert.deepEqual(got.subarray(0, img.length), img);
    assert.ok(got.subarray(img.length).every((b) => b === 0));
    assert.ok(fs.statSync(out).blocks * 512 < got.length / 2, 'export is sparse');
  } finally {
    await pool.close();
  }
});

test('import refuses an image larger than the device, naming both sizes', async (t) => {
  const dir = tmp(t);
  const pool = Pool.create(path.join(dir, 'pool'), { dataSize: 64 << 20, metadataSize: 4 << 20 });
  try {
    await pool.createThin(1, 1 << 20);
    const file = path.join(dir, 'big.img');
    makeImage(file, 17, 0, () => true);
    await assert.rejects(importImage(pool, 1, file), (e: Error & { code?: string }) => e.code === 'E_INVALID' && /larger than thin device 1/.test(e.message));
    assert.equal(pool.thinStatus(1).mappedSectors, 0, 'nothing was written');
  } finally {
    await pool.close();
  }
});

test('CLI: thin import then thin export round-trips an image', (t) => {
  const dir = tmp(t);
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  const poolDir = path.join(dir, 'pool');
  assert.equal(run('pool', 'create', poolDir, '--data-size', '64M', '--metadata-size', '4M').status, 0);
  assert.equal(run('thin', 'create', poolDir, '7', '--size', '2M').status, 0);
  const file = path.join(dir, 'in.img');
  const img = makeImage(file, 10, 333, (i) => i % 2 === 1);
  const imp = run('thin', 'import', poolDir, '7', file, '--json');
  assert.equal(imp.status, 0, imp.stderr);
  assert.equal(JSON.parse(imp.stdout).skippedZero, 6); // chunks 0,2,4,6,8,10 are zero
  const out = path.join(dir, 'out.img');
  const exp = run('thin', 'export', poolDir, '7', out);
  assert.equal(exp.status, 0, exp.stderr);
  assert.deepEqual(fs.readFileSync(out).subarray(0, img.length), img);
  const check = run('check', poolDir, '-q');
  assert.equal(check.status, 0, check.stderr);
});
