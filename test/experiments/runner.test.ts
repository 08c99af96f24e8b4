/** The runner's statistics against numpy's definitions, and the interleaving order. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interleave, percentile, summarize, workloadStats } from '../../src/experiments/runner';

test('percentile is numpy\'s linear interpolation', () => {
  // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 99, 100]) = 1, 1.75, 2.5, 3.7, 3.97, 4
  const xs = [4, 1, 3, 2];
  assert.deepEqual([0, 25, 50, 90, 99, 100].map((p) => Number(percentile(xs, p).toFixed(10))), [1, 1.75, 2.5, 3.7, 3.97, 4]);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('summarize: median, min, max; odd and even counts', () => {
  assert.deepEqual(summarize([3, 1, 2]), { median: 2, min: 1, max: 3, n: 3 });
  assert.deepEqual(summarize([10, 40, 20, 30]), { median: 25, min: 10, max: 40, n: 4 });
  assert.ok(Number.isNaN(summarize([]).median));
});

test('workloadStats: throughput per repeat, latency over every operation', () => {
  const runs = [
    { ops: 4, bytes: 4 * 2 ** 20, seconds: 1, latenciesMs: [1, 1, 1, 1] },
    { ops: 4, bytes: 4 * 2 ** 20, seconds: 2, latenciesMs: [2, 2, 2, 100] },
  ];
  const s = workloadStats('w', 'c', runs);
  assert.deepEqual(s.mibPerSec, { median: 3, min: 2, max: 4, n: 2 });
  assert.equal(s.p50Ms, 1.5);
  assert.ok(s.p99Ms > 90 && s.p99Ms <= 100);
});

test('interleave runs A B C A B C and groups by configuration', async () => {
  const order: string[] = [];
  const out = await interleave(['A', 'B', 'C'] as const, 2, async (c, rep) => { order.push(`${c}${rep}`); return rep; });
  assert.deepEqual(order, ['A0', 'B0', 'C0', 'A1', 'B1', 'C1']);
  assert.deepEqual([...out.entries()], [['A', [0, 1]], ['B', [0, 1]], ['C', [0, 1]]]);
});

test('interleave names the configuration and repeat of a failed trial', async () => {
  await assert.rejects(interleave(['A', 'B'] as const, 2, async (c, rep) => { if (c === 'B' && rep === 1) throw new Error('boom'); }), /B, repeat 2: boom/);
});
