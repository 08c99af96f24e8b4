/**
 * The B-tree's append hint (ascending inserts skip the descent) must never write into
 * a leaf that has become shared or stale: a snapshot taken in the same transaction,
 * another device's inserts, a commit, an abort. Each case is checked against the
 * plain expectation of what each device maps, and with the full checker.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { MemoryDevice } from '../../src/io/memory-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { checkMetadata } from '../../src/thin/check';

function fresh(): { dev: MemoryDevice; md: ThinMetadata } {
  const dev = new MemoryDevice(8 << 20);
  return { dev, md: ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 100000 }) };
}

function keys(md: ThinMetadata, dev: number): number[] {
  return [...md.mappings(dev)].map(([v]) => v);
}

/** Map virtual blocks [from, to) of device 0 in ascending order, each to a fresh data block. */
function mapAscending(md: ThinMetadata, from: number, to: number): void {
  for (let v = from; v < to; v++) md.insertMapping(0, v, md.allocateDataBlock());
}

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a }, (_, i) => a + i);
}

function clean(dev: MemoryDevice): void {
  const r = checkMetadata(dev);
  assert.deepEqual(r.findings.filter((f) => f.severity === 'error').map((f) => f.message), []);
}

test('a snapshot taken between ascending inserts keeps its own mappings', () => {
  const { dev, md } = fresh();
  md.createThin(0);
  mapAscending(md, 0, 300);
  md.createSnap(1, 0); // same transaction: the origin's fresh leaves become shared
  mapAscending(md, 300, 700);
  assert.deepEqual(keys(md, 1), range(0, 300));
  assert.deepEqual(keys(md, 0), range(0, 700));
  md.commit();
  assert.deepEqual(keys(md, 1), range(0, 300));
  clean(dev);
});

test('interleaved ascending inserts into two devices stay separate', () => {
  const { dev, md } = fresh();
  md.createThin(0);
  md.createThin(1);
  for (let v = 0; v < 2000; v++) {
    md.insertMapping(v % 2, v, md.allocateDataBlock());
    if (v % 500 === 0) md.createThin(10 + v); // top-level tree changes in between
  }
  assert.deepEqual(keys(md, 0), range(0, 2000).filter((v) => v % 2 === 0));
  assert.deepEqual(keys(md, 1), range(0, 2000).filter((v) => v % 2 === 1));
  md.commit();
  clean(dev);
});

test('appends continue correctly across commit and abort', () => {
  const { dev, md } = fresh();
  md.createThin(0);
  mapAscending(md, 0, 500);
  md.commit();
  mapAscending(md, 500, 800);
  md.abort();
  assert.deepEqual(keys(md, 0), range(0, 500));
  mapAscending(md, 500, 1500);
  md.removeMapping(0, 1200);
  mapAscending(md, 1500, 1600);
  md.commit();
  assert.deepEqual(keys(md, 0), range(0, 1600).filter((v) => v !== 1200));
  assert.equal(md.deviceDetails(0).mappedBlocks, 1599);
  clean(dev);
});

test('a held metadata snapshot is not written through by appends', () => {
  const { dev, md } = fresh();
  md.createThin(0);
  mapAscending(md, 0, 100);
  md.reserveMetadataSnap();
  mapAscending(md, 100, 400);
  md.commit();
  const snap = ThinMetadata.open(dev, { metadataSnap: true });
  assert.deepEqual(keys(snap, 0), range(0, 100));
  clean(dev);
});
