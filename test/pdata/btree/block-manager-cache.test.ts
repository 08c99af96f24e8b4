/**
 * The block manager's cache after the btree work changed its recency refresh (a hit
 * re-inserts a block at the young end only once it has aged past half the cache, since
 * a Map delete+set on every hit made cached btree lookups ~5x slower). Checks the bound,
 * that a block used regularly stays cached, and that cold blocks are evicted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../../../src/io/memory-device';
import { BlockManager, BLOCK_SIZE, Validator } from '../../../src/pdata/block-manager';

const raw: Validator = { name: 'raw', check() {}, prepare() {} };

test('block manager cache: bounded, keeps hot blocks, evicts cold ones, returns device bytes', () => {
  const dev = new MemoryDevice(1024 * BLOCK_SIZE);
  for (let b = 0; b < 1024; b++) dev.write(new Uint8Array(BLOCK_SIZE).fill(b & 0xff), b * BLOCK_SIZE);
  const bm = new BlockManager(dev, { cacheBlocks: 64 });
  for (let b = 0; b < 64; b++) assert.equal(bm.read(b, raw)[7], b);
  assert.equal(bm.reads, 64);
  for (let b = 0; b < 64; b++) bm.read(b, raw);
  assert.equal(bm.reads, 64, 'all 64 were cached');
  // Stream 900 other blocks while touching block 5 every 16 reads: it must stay.
  bm.read(5, raw);
  for (let b = 100; b < 1000; b++) {
    bm.read(b, raw);
    if (b % 16 === 0) {
      const n: number = bm.reads;
      assert.equal(bm.read(5, raw)[0], 5);
      assert.equal(bm.reads, n, `hot block evicted at ${b}`);
    }
  }
  // Cold blocks from the start are gone; at most 64 blocks are cached.
  const n0: number = bm.reads;
  bm.read(6, raw);
  assert.equal(bm.reads, n0 + 1);
  let hits = 0;
  for (let b = 0; b < 1024; b++) { const r: number = bm.reads; bm.read(b, raw); if (bm.reads === r) hits++; }
  assert.ok(hits <= 64, `${hits} hits from a 64-block cache`);
  // A write replaces the cached copy.
  bm.write(3, new Uint8Array(BLOCK_SIZE).fill(200), raw);
  assert.equal(bm.read(3, raw)[100], 200);
});
