/** Node layout, max_entries (spec 4.2), the node validator, and the value types. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError } from '../../../src/errors';
import { BLOCK_SIZE, blockChecksum } from '../../../src/pdata/block-manager';
import {
  BTREE_NODE_SALT, btreeNodeValidator, deleteAt, initNode, INTERNAL_NODE, keyAt, LEAF_NODE, maxEntriesFor, nrEntries,
  openGap, searchGe, searchLe, setKey, setNrEntries, valueOffset,
} from '../../../src/pdata/btree/node';
import { u32Value, u64Value } from '../../../src/pdata/btree/value-type';
import { getU64, setU32, setU64 } from '../../../src/pdata/layout';

test('max_entries per value size (spec 4.2)', () => {
  assert.equal(maxEntriesFor(8), 252);
  assert.equal(maxEntriesFor(24), 126);
  assert.equal(maxEntriesFor(16), 168);
  assert.equal(maxEntriesFor(4), 336);
  for (let vs = 1; vs <= 1000; vs++) {
    const m = maxEntriesFor(vs);
    assert.equal(m % 3, 0);
    assert.ok(32 + (8 + vs) * m <= 4096);
    assert.ok(32 + (8 + vs) * (m + 3) > 4096);
  }
  assert.throws(() => maxEntriesFor(0), (e: unknown) => isThinError(e, 'E_INVALID'));
});

test('an all-zero block has the spec checksum with the btree salt', () => {
  assert.equal(BTREE_NODE_SALT, 121107);
  assert.equal(blockChecksum(new Uint8Array(BLOCK_SIZE), BTREE_NODE_SALT), 0x58cc7e82);
});

test('the worked example header of spec 4.5 parses', () => {
  const d = new Uint8Array(BLOCK_SIZE);
  initNode(d, LEAF_NODE, 252, 8);
  setNrEntries(d, 111);
  for (let i = 0; i < 111; i++) { setKey(d, i, i); setU64(d, valueOffset(d, i), i * 2 ** 24, 'value'); }
  btreeNodeValidator.prepare(d, 10);
  btreeNodeValidator.check(d, 10);
  assert.deepEqual([...d.subarray(4, 32)], [2, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 111, 0, 0, 0, 252, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(valueOffset(d, 0), 2048);
  assert.deepEqual([...d.subarray(2056, 2064)], [0, 0, 0, 1, 0, 0, 0, 0]);
});

test('the validator names the block and the fault', () => {
  const good = () => { const d = new Uint8Array(BLOCK_SIZE); initNode(d, LEAF_NODE, 252, 8); setNrEntries(d, 3); setKey(d, 0, 1); setKey(d, 1, 5); setKey(d, 2, 9); return d; };
  const cases: Array<[(d: Uint8Array) => void, RegExp]> = [
    [(d) => setU32(d, 4, 0), /flags 0/],
    [(d) => setU32(d, 4, INTERNAL_NODE | LEAF_NODE), /flags 3/],
    [(d) => setU32(d, 16, 253), /nr_entries 253 is more than max_entries 252/],
    [(d) => setU32(d, 20, 251), /max_entries 251/],
    [(d) => setU32(d, 20, 0), /max_entries 0/],
    [(d) => { setU32(d, 20, 255); }, /does not fit/],
    [(d) => setU32(d, 24, 9), /does not fit/],
    [(d) => { setU32(d, 4, INTERNAL_NODE); setU32(d, 24, 4); setU32(d, 20, 336); }, /internal node with value_size 4/],
    [(d) => setKey(d, 2, 5), /keys out of order at index 2/],
    // Raw bytes: setKey refuses a key beyond 2^53, but damage on disk can hold one.
    [(d) => new DataView(d.buffer).setBigUint64(32 + 8, 2n ** 53n + 2n ** 33n, true), /keys out of order at index 2/],
  ];
  const d0 = good();
  btreeNodeValidator.prepare(d0, 77);
  btreeNodeValidator.check(d0, 77);
  for (const [edit, what] of cases) {
    const d = good();
    edit(d);
    btreeNodeValidator.prepare(d, 77);
    assert.throws(() => btreeNodeValidator.check(d, 77), (e: unknown) => {
      assert.ok(isThinError(e, 'E_CORRUPT'), String(e));
      assert.equal(e.details.block, 77);
      assert.match(e.message, /btree node \(block 77\)/);
      assert.match(e.message, what);
      return true;
    });
  }
  const d = good();
  btreeNodeValidator.prepare(d, 77);
  d[3000] ^= 1;
  assert.throws(() => btreeNodeValidator.check(d, 77), (e: unknown) => isThinError(e, 'E_CHECKSUM') && e.details.block === 77);
  const e = good();
  btreeNodeValidator.prepare(e, 77);
  assert.throws(() => btreeNodeValidator.check(e, 78), (x: unknown) => isThinError(x, 'E_CORRUPT') && x.details.block === 78);
});

test('keys are exact up to 2^53-1; one beyond reads as E_CORRUPT naming the key', () => {
  const d = new Uint8Array(BLOCK_SIZE);
  initNode(d, LEAF_NODE, 252, 8);
  setKey(d, 0, 2 ** 53 - 1);
  assert.equal(keyAt(d, 0), 2 ** 53 - 1);
  setKey(d, 1, 2 ** 32 + 5);
  assert.equal(keyAt(d, 1), 2 ** 32 + 5);
  setU32(d, 32 + 8 * 2 + 4, 0x200000);
  assert.throws(() => keyAt(d, 2), (e: unknown) => isThinError(e, 'E_CORRUPT') && /btree key/.test((e as Error).message) && /9007199254740992/.test((e as Error).message));
  assert.throws(() => getU64(d, 32 + 16, 'key 2'), (e: unknown) => isThinError(e, 'E_CORRUPT') && /key 2/.test((e as Error).message));
});

test('search, gap and delete helpers', () => {
  const d = new Uint8Array(BLOCK_SIZE);
  initNode(d, LEAF_NODE, 252, 8);
  const keys = [3, 7, 2 ** 40, 2 ** 52 + 1];
  setNrEntries(d, keys.length);
  keys.forEach((k, i) => { setKey(d, i, k); setU64(d, valueOffset(d, i), k + 1, 'value'); });
  assert.equal(searchLe(d, 4, 0), -1);
  assert.equal(searchLe(d, 4, 3), 0);
  assert.equal(searchLe(d, 4, 6), 0);
  assert.equal(searchLe(d, 4, 2 ** 41), 2);
  assert.equal(searchLe(d, 4, 2 ** 53 - 1), 3);
  assert.equal(searchGe(d, 4, 4), 1);
  assert.equal(searchGe(d, 4, 7), 1);
  assert.equal(searchGe(d, 4, 2 ** 53 - 1), 4);
  openGap(d, 1);
  setKey(d, 1, 5);
  setU64(d, valueOffset(d, 1), 6, 'value');
  assert.deepEqual(Array.from({ length: nrEntries(d) }, (_, i) => [keyAt(d, i), getU64(d, valueOffset(d, i), 'value')]), [[3, 4], [5, 6], [7, 8], [2 ** 40, 2 ** 40 + 1], [2 ** 52 + 1, 2 ** 52 + 2]]);
  deleteAt(d, 0);
  assert.deepEqual(Array.from({ length: nrEntries(d) }, (_, i) => keyAt(d, i)), [5, 7, 2 ** 40, 2 ** 52 + 1]);
  // The slot left behind is zeroed.
  assert.equal(keyAt(d, 4), 0);
  assert.equal(getU64(d, valueOffset(d, 4), 'value'), 0);
});

test('value types pack exactly and refuse what does not fit', () => {
  const dv = new DataView(new ArrayBuffer(16));
  for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) { u64Value.write(dv, 4, v); assert.equal(u64Value.read(dv, 4), v); }
  for (const v of [-1, 1.5, 2 ** 53, NaN]) assert.throws(() => u64Value.write(dv, 0, v), (e: unknown) => isThinError(e, 'E_RANGE'));
  dv.setUint32(4, 0xffffffff, true);
  assert.throws(() => u64Value.read(dv, 0), (e: unknown) => isThinError(e, 'E_CORRUPT'));
  for (const v of [0, 7, 2 ** 32 - 1]) { u32Value.write(dv, 0, v); assert.equal(u32Value.read(dv, 0), v); }
  for (const v of [-1, 2 ** 32, 0.5]) assert.throws(() => u32Value.write(dv, 0, v), (e: unknown) => isThinError(e, 'E_RANGE'));
});
