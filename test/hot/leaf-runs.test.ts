/**
 * Contract of leafRuns (src/hot/hot-path.ts): the addon and the TypeScript twin agree with
 * a naive model, written from spec §4 (node layout) and §5.1 (block_time), on random
 * leaves: runs with and without times, keys and data blocks up to their limits, unaligned
 * buffer slices, empty leaves; a key past 2^53-1 gives -1; bad headers and short outputs
 * are E_INVALID.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { eachImpl, unaligned } from './impls';
import { isThinError } from '../../src/errors';

interface Entry { key: bigint; data: bigint; time: number }

/** A leaf node's bytes as the spec lays them out (flags 2: leaf; value_size 8). */
function leafBytes(entries: Entry[], max: number, size = 4096): Uint8Array {
  const d = new Uint8Array(size);
  const dv = new DataView(d.buffer);
  dv.setUint32(4, 2, true);
  dv.setUint32(16, entries.length, true);
  dv.setUint32(20, max, true);
  dv.setUint32(24, 8, true);
  entries.forEach((e, i) => {
    dv.setBigUint64(32 + 8 * i, e.key, true);
    dv.setBigUint64(32 + 8 * max + 8 * i, (e.data << 24n) | BigInt(e.time), true);
  });
  return d;
}

/** The model: runs as [origin, data, length, time], or -1 for a key past 2^53-1. */
function modelRuns(entries: Entry[], withTime: boolean): number[][] | -1 {
  if (entries.some((e) => e.key > BigInt(Number.MAX_SAFE_INTEGER))) return -1;
  const out: number[][] = [];
  for (const e of entries) {
    const last = out[out.length - 1];
    const [k, d] = [Number(e.key), Number(e.data)];
    if (last && k === last[0] + last[2] && d === last[1] + last[2] && (!withTime || e.time === last[3])) last[2]++;
    else out.push([k, d, 1, e.time]);
  }
  return out;
}

/** Entries in increasing key order that often continue each other (runs), sometimes jump. */
const entriesArb = fc.array(
  fc.record({ step: fc.oneof(fc.constant(1n), fc.bigInt({ min: 1n, max: 5n }), fc.bigInt({ min: 1n, max: 2n ** 40n })), dstep: fc.oneof(fc.constant(1n), fc.bigInt({ min: 0n, max: 2n ** 39n })), time: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffff })) }),
  { maxLength: 252 },
).chain((steps) => fc.record({ key0: fc.bigInt({ min: 0n, max: 2n ** 52n }), data0: fc.bigInt({ min: 0n, max: 2n ** 39n }) }).map(({ key0, data0 }) => {
  const out: Entry[] = [];
  let key = key0;
  let data = data0;
  for (const s of steps) {
    out.push({ key, data: data % 2n ** 40n, time: s.time });
    key += s.step;
    data += s.dstep;
  }
  return out;
}));

test('contract: leafRuns matches the model', (t) =>
  eachImpl(t, (impl) => {
    fc.assert(
      fc.property(entriesArb, fc.boolean(), fc.integer({ min: 0, max: 15 }), (entries, withTime, offset) => {
        const leaf = unaligned(leafBytes(entries, 252), offset);
        const out = new Float64Array(4 * 252);
        const want = modelRuns(entries, withTime);
        const k = impl.leafRuns(leaf, withTime, out);
        if (want === -1) { assert.equal(k, -1); return; }
        assert.equal(k, want.length);
        assert.deepEqual(Array.from({ length: k }, (_, i) => Array.from(out.subarray(4 * i, 4 * i + 4))), want);
      }),
      { numRuns: 1500 },
    );
  }));

test('contract: leafRuns refuses bad leaves and short outputs with E_INVALID', (t) =>
  eachImpl(t, (impl) => {
    const one = [{ key: 0n, data: 1n, time: 0 }];
    const invalid = (f: () => unknown): void => assert.throws(f, (e: unknown) => isThinError(e) && e.code === 'E_INVALID');
    invalid(() => impl.leafRuns(new Uint8Array(31), true, new Float64Array(4)));
    const vs = leafBytes(one, 252); vs[24] = 16;
    invalid(() => impl.leafRuns(vs, true, new Float64Array(4)));
    invalid(() => impl.leafRuns(leafBytes(one, 300), true, new Float64Array(4)));
    const over = leafBytes(one, 252); over[16] = 253 & 0xff; over[20] = 252; // nr_entries > max_entries
    new DataView(over.buffer).setUint32(16, 253, true);
    invalid(() => impl.leafRuns(over, true, new Float64Array(4 * 253)));
    invalid(() => impl.leafRuns(leafBytes([...one, { key: 1n, data: 9n, time: 0 }], 252), true, new Float64Array(7)));
    invalid(() => impl.leafRuns(leafBytes(one, 252), 1 as unknown as boolean, new Float64Array(4)));
    invalid(() => impl.leafRuns(leafBytes(one, 252), true, new Array(4) as unknown as Float64Array));
    assert.equal(impl.leafRuns(leafBytes([], 252), false, new Float64Array(0)), 0, 'an empty leaf has no runs');
  }));
