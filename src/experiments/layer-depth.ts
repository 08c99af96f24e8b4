/**
 * layer-depth: read and write cost on top of a chain of snapshots of depth 1, 8,
 * 32, 128, against a qcow2 backing chain of the same depth. dm-thin snapshots are
 * O(1): a snapshot shares its origin's mapping subtree, so a lookup from any depth
 * is one B-tree walk. A qcow2 overlay that does not hold a cluster asks its backing
 * file, and so on down the chain.
 *
 * Contract: both sides get the same geometry (base data in the bottom layer, empty
 * layers above it, 64 KiB chunks and clusters) and the same access pattern (4 KiB at
 * offset i * step, wrapping, queue depth 1, buffered I/O): qemu-img bench's own
 * pattern. qcow2 times come from qemu-img bench ("Run completed in X seconds"), so
 * they have a mean per operation but no percentiles.
 */
import * as fs from 'fs';
import { ThinError } from '../errors';
import * as path from 'path';
import { Pool } from '../pool/pool';
import { Experiment, ExperimentContext, KiB, MiB, requireSizeInMiB } from './experiment';
import * as host from './host';
import { Row } from './report/model';
import { interleave, OpsResult, payload, summarize, timeOps, workloadStats } from './runner';

const STEP = 68 * KiB; // 17 pages: every access lands in a different 64 KiB chunk for a while
const IO = 4 * KiB;

export function depths(quick: boolean): number[] {
  return quick ? [1, 4, 16] : [1, 8, 32, 128];
}

/** qemu-img bench's offsets: start at 0, add step, wrap at (image size - request size). */
export function benchOffset(i: number, size: number): number {
  let off = 0;
  for (let k = 0; k < i; k++) off = (off + STEP) % (size - IO);
  return off;
}

interface Trial { read: OpsResult; write: OpsResult }

async function thinTrial(depth: number, ctx: ExperimentContext, ops: number, seed: number): Promise<Trial> {
  const S = ctx.size;
  const dir = host.mkTemp(ctx.workDir, `ld-thin-${depth}-`);
  const pool = Pool.create(path.join(dir, 'pool'), { dataSize: S + ops * 64 * KiB + 4 * MiB, metadataSize: 16 * MiB, mode: 'loop-lvm' });
  try {
    await pool.createThin(1, S);
    const big = payload(MiB, seed);
    for (let o = 0; o < S; o += MiB) await pool.write(1, o, big);
    for (let d = 1; d <= depth; d++) await pool.createSnap(d + 1, d);
    const top = depth + 1;
    const offs = Array.from({ length: ops }, (_, i) => benchOffset(i, S));
    await pool.flush();
    // Warm the JIT and the metadata cache on the origin, so the first configuration does not pay for them.
    for (let i = 0; i < 100; i++) await pool.read(1, offs[i % ops], IO);
    const read = await timeOps(ops, IO, (i) => pool.read(top, offs[i], IO));
    const small = payload(IO, seed + 1);
    const write = await timeOps(ops, IO, (i) => pool.write(top, offs[i], small));
    return { read, write };
  } finally {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function qemuBench(file: string, ops: number, write: boolean): OpsResult {
  const args = ['bench', '-f', 'qcow2', '-c', String(ops), '-d', '1', '-s', String(IO), '-S', String(STEP), '-t', 'writeback', ...(write ? ['-w'] : []), file];
  const r = host.run('qemu-img', args);
  const m = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  if (!r.ok || !m) throw new ThinError('E_IO', `qemu-img ${args.join(' ')}: ${r.error ?? r.stdout}`);
  const seconds = Number(m[1]);
  return { ops, bytes: ops * IO, seconds, latenciesMs: [] };
}

function qcow2Trial(depth: number, ctx: ExperimentContext, ops: number): Trial {
  const S = ctx.size;
  const dir = host.mkTemp(ctx.workDir, `ld-qcow2-${depth}-`);
  try {
    const base = path.join(dir, 'base.qcow2');
    const must = (cmd: string, args: string[]) => {
      const r = host.run(cmd, args);
      if (!r.ok) throw new ThinError('E_IO', `${cmd} ${args.join(' ')}: ${r.error}`);
    };
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', base, String(S)]);
    must('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x5a 0 ${S}`, base]);
    let prev = base;
    for (let d = 1; d <= depth; d++) {
      const ov = path.join(dir, `layer-${d}.qcow2`);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', prev, '-F', 'qcow2', ov]);
      prev = ov;
    }
    return { read: qemuBench(prev, ops, false), write: qemuBench(prev, ops, true) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const layerDepth: Experiment = {
  name: 'layer-depth',
  title: 'Snapshot depth: thin snapshots vs a qcow2 backing chain',
  question: 'Does a deep stack of image layers make reads and writes slower, on dm-thin snapshots and on a qcow2 backing chain of the same depth?',
  sizeMeans: 'the base device under the chain',
  defaults: { size: 64 * MiB, repeat: 3 },
  quick: { size: 8 * MiB, repeat: 1 },
  tools: ['qemu-img', 'qemu-io'],
  async run(ctx) {
    requireSizeInMiB(ctx.size, 1);
    const ops = ctx.quick ? 300 : 2000;
    const ds = depths(ctx.quick);
    const qemuMissing = host.toolMissing('qemu-img', 'qemu-utils') ?? host.toolMissing('qemu-io', 'qemu-utils');
    if (qemuMissing) ctx.skip('qcow2 backing chains', qemuMissing);
    const configs = ds.flatMap((d) => [`thin depth ${d}`, ...(qemuMissing ? [] : [`qcow2 depth ${d}`])]);
    const res = await interleave(configs, ctx.repeat, async (c, rep) => {
      const d = Number(c.split(' ').pop());
      return c.startsWith('thin') ? thinTrial(d, ctx, ops, 60 + rep) : qcow2Trial(d, ctx, ops);
    }, ctx.progress, 'layer-depth');
    const rows: Row[] = [];
    for (const c of configs) {
      const [impl, , d] = c.split(' ');
      for (const op of ['read', 'write'] as const) {
        const runs = res.get(c)!.map((t) => t[op]);
        const s = workloadStats(op, c, runs);
        const us = summarize(runs.map((r) => r.seconds / r.ops * 1e6));
        rows.push({ op, implementation: impl === 'thin' ? 'thinsim snapshots' : 'qcow2 chain', depth: Number(d), 'µs per op median': us.median, 'µs min': us.min, 'µs max': us.max, 'IOPS median': s.iops.median, 'p50 ms': s.p50Ms, 'p99 ms': s.p99Ms });
      }
    }
    const sel = (op: string) => rows.filter((r) => r.op === op).map(({ op: _o, ...rest }) => rest);
    const ratio = (impl: string, op: string) => {
      const r = rows.filter((x) => x.implementation === impl && x.op === op);
      return r.length ? (r[r.length - 1]['µs per op median'] as number) / (r[0]['µs per op median'] as number) : NaN;
    };
    const findings = [
      `thinsim snapshots: a 4 KiB read at depth ${ds[ds.length - 1]} costs ${ratio('thinsim snapshots', 'read').toFixed(2)}x depth ${ds[0]}; a write (breaking sharing) ${ratio('thinsim snapshots', 'write').toFixed(2)}x.`,
    ];
    if (!qemuMissing) findings.push(`qcow2 chain: a 4 KiB read at depth ${ds[ds.length - 1]} costs ${ratio('qcow2 chain', 'read').toFixed(2)}x depth ${ds[0]}; an allocating write ${ratio('qcow2 chain', 'write').toFixed(2)}x.`);
    const chart = (op: 'read' | 'write') => ({
      id: `depth-${op}`, title: `4 KiB ${op}s on the top layer vs chain depth (median, bars: min..max)`, mark: 'line' as const,
      x: { field: 'depth', title: 'snapshot / backing chain depth', log: true }, y: { field: 'µs per op median', title: `µs per ${op}` },
      series: { field: 'implementation', title: 'implementation' }, range: { low: 'µs min', high: 'µs max' }, data: sel(op),
    });
    return {
      params: { 'base size': ctx.size, depths: ds.join(', '), 'ops per measurement': ops, 'request size': IO, 'step between requests': STEP, 'queue depth': 1, 'chunk / cluster size': '64 KiB', repeat: ctx.repeat, quick: ctx.quick },
      method: [
        'Base: a device of --size written in full (thinsim: thin device 1; qcow2: base.qcow2 written by qemu-io). Then `depth` empty layers: thinsim create_snap of the previous device; qcow2 `qemu-img create -b prev -F qcow2`.',
        `On the top layer: ${ops} reads of 4 KiB at offset i x ${STEP / KiB} KiB (wrapping), then ${ops} writes at the same offsets: qemu-img bench -d 1 -s 4096 -S ${STEP} -t writeback (and -w); thinsim the same offsets through pool.read/pool.write one at a time. Both buffered, data warm in the page cache.`,
        'thinsim times each operation (p50/p99 given); qemu-img bench gives only the total, so qcow2 rows have the mean per operation and no percentiles.',
      ],
      findings,
      sections: [
        { title: 'Reads', charts: [chart('read')] },
        { title: 'Writes (copy-on-write from the chain)', charts: [chart('write')] },
      ],
    };
  },
};
