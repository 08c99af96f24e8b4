/**
 * Gather lists against a model (the concatenated bytes): length, slices of any range
 * (views, not copies), and flatten.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { byteLength, flatten, sliceBytes } from '../../src/io/byte-list';

const parts = fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 });

test('sliceBytes and flatten match slices of the concatenated bytes', () => {
  fc.assert(fc.property(parts, fc.nat(), fc.nat(), (list, a, b) => {
    const whole = Buffer.concat(list);
    assert.equal(byteLength(list), whole.length);
    assert.equal(byteLength(whole), whole.length);
    const from = whole.length ? a % (whole.length + 1) : 0;
    const len = (whole.length - from) ? b % (whole.length - from + 1) : 0;
    for (const src of [list, whole]) {
      const views = sliceBytes(src, from, len);
      assert.ok(Buffer.from(flatten(views)).equals(whole.subarray(from, from + len)), `[${from}, ${from + len})`);
      assert.equal(byteLength(views), len);
    }
    assert.ok(Buffer.from(flatten(list.length ? list : [new Uint8Array(0)])).equals(whole));
  }), { numRuns: 500 });
});

test('sliceBytes returns views: writing through one changes the source', () => {
  const list = [Buffer.from([1, 2, 3]), Buffer.from([4, 5])];
  const [a, b] = sliceBytes(list, 2, 2);
  a[0] = 30;
  b[0] = 40;
  assert.deepEqual([...list[0], ...list[1]], [1, 2, 30, 40, 5]);
  assert.equal(flatten([list[1]]), list[1], 'one buffer is returned as is');
});
