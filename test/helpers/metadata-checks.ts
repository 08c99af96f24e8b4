/**
 * Checks of a ThinMetadata against the PoolModel (metadata-model.ts): the live view (device
 * ids, pool time, transaction id, details, every mapping and point lookups), the data space
 * map's reference counts, and expectThinError for calls that must fail with a stable code.
 */

import assert from 'node:assert/strict';
import type { Rand } from '../../support/random';
import { isThinError, type ThinErrorCode } from '../../src/errors';
import type { ThinMetadata } from '../../src/thin/metadata';
import type { PoolModel, PoolState } from './metadata-model';

/** Require that `md` (live view) holds exactly `state`. */
export function assertMetadataMatches(md: ThinMetadata, state: PoolState, where: string, r?: Rand): void {
  assert.deepEqual(md.devices(), [...state.devices.keys()].sort((a, b) => a - b), `${where}: device ids`);
  assert.equal(md.time, state.time, `${where}: pool time`);
  assert.equal(md.transactionId, state.transactionId, `${where}: transaction id`);
  for (const [id, d] of state.devices) {
    const det = md.deviceDetails(id);
    assert.deepEqual(
      { mappedBlocks: det.mappedBlocks, transactionId: det.transactionId, creationTime: det.creationTime, snapshottedTime: det.snapshottedTime },
      { mappedBlocks: d.map.size, ...d.details },
      `${where}: details of device ${id}`,
    );
    const got = [...md.mappings(id)].map(([v, m]) => [v, m.block, m.time]);
    const want = [...d.map].sort((a, b) => a[0] - b[0]).map(([v, m]) => [v, m.block, m.time]);
    if (got.length !== want.length || got.some((g, i) => g[0] !== want[i][0] || g[1] !== want[i][1] || g[2] !== want[i][2])) {
      assert.deepEqual(firstDiff(got, want), undefined, `${where}: mappings of device ${id} (${got.length} vs model ${want.length})`);
    }
    // Point lookups: mapped keys, neighbours and far keys.
    const keys = [...d.map.keys()];
    const probes: number[] = [];
    for (let i = 0; i < 24 && keys.length; i++) {
      const k = r ? keys[r.int(keys.length)] : keys[(i * 7919) % keys.length];
      probes.push(k, k + 1, Math.max(0, k - 1));
    }
    probes.push(0, 2 ** 40, r ? r.int(100000) : 12345);
    for (const v of probes) {
      const m = md.lookup(id, v);
      const want1 = d.map.get(v);
      assert.deepEqual(m ? { block: m.block, time: m.time } : undefined, want1, `${where}: lookup(${id}, ${v})`);
    }
  }
}

function firstDiff(got: number[][], want: number[][]): unknown {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const g = got[i];
    const w = want[i];
    if (!g || !w || g[0] !== w[0] || g[1] !== w[1] || g[2] !== w[2]) return { index: i, got: g, model: w };
  }
  return undefined;
}

/** Data space map: count > 0 exactly for blocks the model says are referenced. */
export function assertDataCounts(md: ThinMetadata, model: PoolModel, where: string): void {
  const nrBlocks = md.spaceUsage().dataBlocks;
  assert.equal(nrBlocks, model.nrDataBlocks, `${where}: data space map size`);
  let wrong = 0;
  const examples: string[] = [];
  for (let b = 0; b < nrBlocks; b++) {
    const c = md.dataRefCount(b);
    const want = model.referenced(b);
    if ((c > 0) !== want) {
      wrong++;
      if (examples.length < 5) examples.push(`block ${b}: count ${c}, model ${want ? 'referenced' : 'free'}`);
    }
  }
  assert.equal(wrong, 0, `${where}: data counts disagree with the model: ${examples.join('; ')}`);
}

/** Run `fn`, require a ThinError with `code`. */
export function expectThinError(fn: () => unknown, code: ThinErrorCode, what: string): void {
  try {
    fn();
  } catch (e) {
    if (isThinError(e, code)) return;
    throw new Error(`${what}: expected ThinError ${code}, got ${(e as Error)?.stack ?? e}`);
  }
  throw new Error(`${what}: expected ThinError ${code}, but it succeeded`);
}
