/**
 * ByteQueue against a model (the bytes pushed, concatenated): take, takeList and drop of
 * random lengths over random chunkings return and remove exactly the next bytes; a take
 * within one buffer is a view, a takeList never copies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ByteQueue } from '../../src/nbd/byte-queue';

test('ByteQueue hands out exactly the next bytes, whichever way they are taken', () => {
  fc.assert(fc.property(
    fc.array(fc.uint8Array({ minLength: 1, maxLength: 50 }), { minLength: 1, maxLength: 8 }),
    fc.array(fc.tuple(fc.constantFrom('take', 'list', 'drop'), fc.nat(120)), { maxLength: 12 }),
    (chunks, ops) => {
      const q = new ByteQueue();
      for (const c of chunks) q.push(Buffer.from(c));
      let model = Buffer.concat(chunks);
      for (const [op, n0] of ops) {
        const n = n0 % (model.length + 1);
        const want = model.subarray(0, n);
        if (op === 'take') assert.ok(q.take(n).equals(want), `take ${n}`);
        if (op === 'list') assert.ok(Buffer.concat(q.takeList(n)).equals(want), `takeList ${n}`);
        if (op === 'drop') q.drop(n);
        model = model.subarray(n);
        assert.equal(q.length, model.length);
      }
      assert.ok(Buffer.concat(q.takeAll()).equals(model), 'the rest, in order');
      assert.equal(q.length, 0);
    },
  ), { numRuns: 300 });
});

test('ByteQueue gives views where it can', () => {
  const a = Buffer.from([1, 2, 3, 4]);
  const b = Buffer.from([5, 6]);
  const q = new ByteQueue();
  q.push(a);
  q.push(b);
  const head = q.take(2);
  head[0] = 9;
  assert.equal(a[0], 9, 'a take inside one buffer is a view');
  const [x, y] = q.takeList(3);
  x[0] = 7;
  y[0] = 8;
  assert.deepEqual([...a, ...b], [9, 2, 7, 4, 8, 6], 'takeList returns views');
});
