/**
 * overcommit: thin devices whose virtual sizes add up to more than the pool. The
 * fill curve (pool blocks used vs bytes written), when the low-water mark fires,
 * and what writers see when the pool runs out: ENOSPC at once under
 * error_if_no_space; under the queue policy writes wait (no_space_timeout) and
 * complete after a resize, or fail when the timeout passes without one.
 *
 * Contract: every figure is an observation of the pool's public API (its status,
 * its 'low-water-mark' and 'mode' events, the promises of writes) timed with
 * performance.now(); the three policies run the same writes, repeats interleaved.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Pool } from '../pool/pool';
import { Experiment, ExperimentContext, KiB, MiB, requireSizeInMiB } from './experiment';
import * as host from './host';
import { Row } from './report/model';
import { interleave, payload, summarize } from './runner';

export const POLICIES = ['error_if_no_space', 'queue + resize', 'queue, no resize'] as const;
export type Policy = typeof POLICIES[number];

const THINS = 4;
const WRITE = 256 * KiB;
/** How long a write may take before we call it queued (a plain write takes well under this). */
const QUEUED_AFTER_MS = 250;

export interface OvercommitTrial {
  policy: Policy;
  poolBytes: number;
  virtualBytes: number;
  curve: { ms: number; writtenMiB: number; usedMiB: number }[];
  lowWater?: { writtenMiB: number; usedMiB: number; freeBlocks: number; ms: number };
  modes: { mode: string; ms: number }[];
  /** The write that met a full pool and the ones issued beside it. */
  atExhaustion: { outcome: 'ENOSPC' | 'completed' | 'failed'; code?: string; waitedMs: number }[];
  /** Was the first write at exhaustion still pending after QUEUED_AFTER_MS? */
  queued: boolean;
  resizedAtMs?: number;
  usedAfterMiB: number;
  totalAfterMiB: number;
}

export function overcommitParams(ctx: { size: number; quick: boolean }) {
  return { poolBytes: ctx.size, timeoutS: ctx.quick ? 1 : 2, lowWaterPct: 25 };
}

async function trial(policy: Policy, ctx: ExperimentContext, seed: number): Promise<OvercommitTrial> {
  const p = overcommitParams(ctx);
  const dir = host.mkTemp(ctx.workDir, 'oc-');
  const chunk = 64 * KiB;
  const blocks = p.poolBytes / chunk;
  const lowWaterMark = Math.floor(blocks * p.lowWaterPct / 100);
  const pool = Pool.create(path.join(dir, 'pool'), {
    dataSize: p.poolBytes, metadataSize: 8 * MiB, mode: 'loop-lvm', lowWaterMark,
    errorIfNoSpace: policy === 'error_if_no_space', noSpaceTimeout: p.timeoutS,
  });
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const r: OvercommitTrial = { policy, poolBytes: p.poolBytes, virtualBytes: THINS * p.poolBytes, curve: [], modes: [], atExhaustion: [], queued: false, usedAfterMiB: 0, totalAfterMiB: 0 };
  let written = 0;
  const used = () => pool.status().usedDataBlocks * chunk / MiB;
  pool.on('low-water-mark', (e: { free: number }) => { r.lowWater ??= { writtenMiB: written / MiB, usedMiB: used(), freeBlocks: e.free, ms: now() }; });
  pool.on('mode', (m: string) => { r.modes.push({ mode: m, ms: now() }); });
  try {
    for (let id = 1; id <= THINS; id++) await pool.createThin(id, p.poolBytes);
    const buf = payload(WRITE, seed);
    const offsets = new Array<number>(THINS + 1).fill(0);
    r.curve.push({ ms: 0, writtenMiB: 0, usedMiB: 0 });
    // Round-robin over the devices until a write does not complete at once.
    for (let i = 0; ; i++) {
      const id = 1 + (i % THINS);
      const started = performance.now();
      const w = settle(pool.write(id, offsets[id], buf));
      let first = await Promise.race([w, sleep(QUEUED_AFTER_MS).then(() => undefined)]);
      // A write that is merely slow (a busy machine) is not a queued one: only a pool out of space queues.
      while (first === undefined && pool.mode !== 'out_of_data_space') first = await Promise.race([w, sleep(QUEUED_AFTER_MS).then(() => undefined)]);
      if (first && first.ok) {
        offsets[id] += WRITE;
        written += WRITE;
        r.curve.push({ ms: now(), writtenMiB: written / MiB, usedMiB: used() });
        continue;
      }
      // The pool is full: this write either failed or is waiting.
      r.queued = first === undefined;
      const others = [1, 2, 3].map((k) => {
        const oid = 1 + ((i + k) % THINS);
        const s = performance.now();
        return { s, p: settle(pool.write(oid, offsets[oid] + (oid === id ? WRITE : 0), buf)) };
      });
      if (policy === 'queue + resize') {
        await sleep(QUEUED_AFTER_MS);
        r.resizedAtMs = now();
        await pool.resize({ dataSize: 2 * p.poolBytes });
      }
      const all = [{ s: started, p: w }, ...others];
      for (const x of all) {
        const o = await x.p;
        const waitedMs = o.at - x.s;
        if (o.ok) { written += WRITE; r.atExhaustion.push({ outcome: 'completed', waitedMs }); } else {
          const code = (o.error as { code?: string }).code;
          r.atExhaustion.push({ outcome: code === 'ENOSPC' && policy === 'error_if_no_space' ? 'ENOSPC' : 'failed', code, waitedMs });
        }
      }
      r.curve.push({ ms: now(), writtenMiB: written / MiB, usedMiB: used() });
      break;
    }
    const st = pool.status();
    r.usedAfterMiB = st.usedDataBlocks * chunk / MiB;
    r.totalAfterMiB = st.totalDataBlocks * chunk / MiB;
    return r;
  } finally {
    try {
      await pool.close(); // a failed close (its commit) is reported, not dropped
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

type Settled = { ok: true; at: number } | { ok: false; error: unknown; at: number };
function settle(p: Promise<unknown>): Promise<Settled> {
  return p.then(() => ({ ok: true as const, at: performance.now() }), (error) => ({ ok: false as const, error, at: performance.now() }));
}
const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));

export const overcommit: Experiment = {
  name: 'overcommit',
  title: 'Overcommitted thin devices: filling a pool',
  question: 'What happens when thin devices promise more than the pool has: when does the low-water mark fire, and what do writers see when space runs out, with and without a resize?',
  sizeMeans: 'the pool\'s data size (its devices promise 4x)',
  defaults: { size: 64 * MiB, repeat: 3 },
  quick: { size: 8 * MiB, repeat: 1 },
  tools: [],
  async run(ctx) {
    requireSizeInMiB(ctx.size, 2, 'the pool size');
    const p = overcommitParams(ctx);
    const trials = await interleave(POLICIES, ctx.repeat, (c, rep) => trial(c, ctx, 40 + rep), ctx.progress, 'overcommit');
    const curveRows: Row[] = [];
    for (const pol of POLICIES) {
      const t = trials.get(pol)![0];
      for (const c of t.curve) curveRows.push({ policy: pol, 'written MiB': c.writtenMiB, 'pool used MiB': c.usedMiB, ms: c.ms });
    }
    const eventRows: Row[] = [];
    const exhaustRows: Row[] = [];
    for (const pol of POLICIES) {
      for (const [rep, t] of trials.get(pol)!.entries()) {
        eventRows.push({ policy: pol, repeat: rep + 1, 'low-water mark at written MiB': t.lowWater?.writtenMiB, 'free blocks then': t.lowWater?.freeBlocks, 'modes seen': t.modes.map((m) => `${m.mode}@${m.ms.toFixed(0)}ms`).join(' '), 'first write queued': t.queued, 'resized at ms': t.resizedAtMs, 'pool used after MiB': t.usedAfterMiB, 'pool size after MiB': t.totalAfterMiB });
        for (const [i, x] of t.atExhaustion.entries()) exhaustRows.push({ policy: pol, repeat: rep + 1, write: i + 1, outcome: x.outcome, code: x.code ?? '', 'waited ms': x.waitedMs });
      }
    }
    const waitRows: Row[] = POLICIES.map((pol) => {
      const w = summarize(trials.get(pol)!.flatMap((t) => t.atExhaustion.map((x) => x.waitedMs)));
      return { policy: pol, 'wait ms median': w.median, 'wait ms min': w.min, 'wait ms max': w.max };
    });
    const findings: string[] = [];
    const lw = trials.get('error_if_no_space')![0].lowWater;
    if (lw) findings.push(`The low-water mark (${p.lowWaterPct}% of ${p.poolBytes / MiB} MiB free) fired during the write that brought the pool to ${lw.usedMiB.toFixed(2)} MiB used (${lw.freeBlocks} free blocks; ${lw.writtenMiB.toFixed(2)} MiB completed before it), on devices promising ${THINS * p.poolBytes / MiB} MiB.`);
    for (const pol of POLICIES) {
      const outs = trials.get(pol)!.flatMap((t) => t.atExhaustion);
      const counts = new Map<string, number>();
      for (const o of outs) counts.set(o.outcome + (o.code && o.outcome !== 'ENOSPC' ? ` (${o.code})` : ''), (counts.get(o.outcome + (o.code && o.outcome !== 'ENOSPC' ? ` (${o.code})` : '')) ?? 0) + 1);
      const w = waitRows.find((x) => x.policy === pol)!;
      findings.push(`${pol}: writes at exhaustion: ${[...counts].map(([k, v]) => `${v} ${k}`).join(', ')}; waited ${(w['wait ms median'] as number).toFixed(1)} ms median (${(w['wait ms min'] as number).toFixed(1)}..${(w['wait ms max'] as number).toFixed(1)}).`);
    }
    return {
      params: { 'pool size': p.poolBytes, 'thin devices': THINS, 'virtual size each': p.poolBytes, overcommit: `${THINS}x`, 'write size': WRITE, 'low-water mark': `${p.lowWaterPct}% of blocks`, 'no_space_timeout s': p.timeoutS, 'resize to': 2 * p.poolBytes, repeat: ctx.repeat, quick: ctx.quick },
      method: [
        `${THINS} thin devices of ${p.poolBytes / MiB} MiB each on a ${p.poolBytes / MiB} MiB pool (64 KiB chunks, loop-lvm). One writer goes round-robin over them with ${WRITE / KiB} KiB sequential writes; after each write the pool status gives used blocks.`,
        `A write still pending after ${QUEUED_AFTER_MS} ms while the pool reports out_of_data_space counts as queued. At that point three more writes go to the other devices at once; then under "queue + resize" the pool grows to ${2 * p.poolBytes / MiB} MiB after another ${QUEUED_AFTER_MS} ms.`,
        'Waits are from each write\'s issue to its promise settling; events come from the pool\'s low-water-mark and mode events.',
      ],
      findings,
      sections: [
        { title: 'Fill curve', charts: [
          { id: 'fill-curve', title: 'Pool blocks used vs bytes written (first repeat)', mark: 'line', x: { field: 'written MiB', title: 'bytes written (MiB)' }, y: { field: 'pool used MiB', title: 'pool data used (MiB)' }, series: { field: 'policy', title: 'no-space policy' }, data: curveRows },
        ], tables: [{ title: 'Events per trial', columns: Object.keys(eventRows[0]), rows: eventRows.map((e) => Object.values(e)) }] },
        { title: 'What writers see at exhaustion', charts: [
          { id: 'exhaustion-wait', title: 'Time from issue to outcome, writes at exhaustion', mark: 'bar', x: { field: 'policy', title: 'no-space policy' }, y: { field: 'wait ms median', title: 'ms (median, bars: min..max)' }, range: { low: 'wait ms min', high: 'wait ms max' }, data: waitRows },
        ], tables: [{ title: 'Each write at exhaustion', columns: Object.keys(exhaustRows[0]), rows: exhaustRows.map((e) => Object.values(e)) }] },
      ],
    };
  },
};
