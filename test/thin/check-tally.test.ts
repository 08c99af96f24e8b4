/**
 * The checker's compact reference tallies (src/thin/check/tally.ts) against a plain Map
 * model: every count exact across the 2-bit entries, nibble pages, their widening to 16
 * bits and the map beyond 3 + 65535, for blocks inside and beyond `size`; and the hot
 * loop's in-place bump, as the contract states it, gives the same counts as inc().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_BLOCKS, Tally } from '../../src/thin/check/tally';
import { Rand } from '../../support/random';

function agree(t: Tally, model: Map<number, number>, probes: number[]): void {
  for (const b of probes) assert.equal(t.get(b), model.get(b) ?? 0, `block ${b}`);
  const beyond = [...model.keys()].filter((b) => b >= t.size).sort((a, b) => a - b);
  assert.deepEqual(t.beyond(), beyond);
}

test('Tally counts exactly like a map, through every width', () => {
  const size = 3 * PAGE_BLOCKS + 17;
  const t = new Tally(size);
  const model = new Map<number, number>();
  const rng = new Rand(7);
  const inc = (b: number, n = 1): void => {
    for (let i = 0; i < n; i++) t.inc(b);
    model.set(b, (model.get(b) ?? 0) + n);
  };
  // Scattered single references, small sharing, a page forced to 16 bits, one block past 65538.
  for (let i = 0; i < 20000; i++) inc(rng.int(size));
  for (let i = 0; i < 2000; i++) inc(rng.int(PAGE_BLOCKS), 1 + rng.int(6));
  inc(PAGE_BLOCKS + 5, 3 + 15); // nibble full
  inc(PAGE_BLOCKS + 6, 3 + 16); // widens the page, keeping PAGE_BLOCKS + 5's count
  inc(2 * PAGE_BLOCKS + 1, 3 + 65535 + 42);
  inc(size - 1, 4);
  inc(size, 2);
  inc(size + 1000, 1);
  inc(2 ** 33, 3);
  const probes = [...model.keys(), 0, 1, PAGE_BLOCKS - 1, PAGE_BLOCKS, size - 2, size + 1];
  for (let i = 0; i < 5000; i++) probes.push(rng.int(size));
  agree(t, model, probes);
});

test('the in-place bump of the contract is inc()', () => {
  const size = 2 * PAGE_BLOCKS;
  const a = new Tally(size);
  const b = new Tally(size);
  const rng = new Rand(11);
  for (let i = 0; i < 50000; i++) {
    const blk = rng.int(size + 10);
    a.inc(blk);
    const q = blk >>> 2;
    const s = (blk & 3) << 1;
    if (blk < b.fastLimit && ((b.bits[q] >>> s) & 3) < 3) b.bits[q] += 1 << s;
    else b.inc(blk);
  }
  for (let blk = 0; blk < size + 10; blk++) assert.equal(b.get(blk), a.get(blk), `block ${blk}`);
});
