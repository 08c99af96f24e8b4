/**
 * loop-vs-direct: the same pool geometry and workload on Docker's two devicemapper
 * setups. loop-lvm: sparse data and metadata files, buffered I/O. direct-lvm: a
 * preallocated data file with O_DIRECT, and (as root, with losetup) a loop block
 * device over a preallocated file, which is what a real LV looks like to the pool.
 *
 * Contract: every backend runs the same workload with the same seeds, repeats
 * interleaved; host figures (allocation, extents, page cache, writeback) are read
 * with stat, filefrag, fincore and /proc, never computed from the pool's own view.
 */
import * as fs from 'fs';
import { ThinError } from '../errors';
import { hot, loadError } from '../hot';
import * as path from 'path';
import { Pool } from '../pool/pool';
import { Experiment, ExperimentContext, KiB, MiB, requireSizeInMiB } from './experiment';
import * as host from './host';
import { ChartSpec, mib, Row, Section, Table } from './report/model';
import { interleave, OpsResult, payload, Rng, timeOps, workloadStats, WorkloadStats, summarize } from './runner';

export type Backend = 'loop-lvm' | 'direct-lvm file' | 'direct-lvm loopdev';
const ALL_BACKENDS: Backend[] = ['loop-lvm', 'direct-lvm file', 'direct-lvm loopdev'];

/** A pool on one backend, and the host file under its data device. */
export interface BackendPool {
  pool: Pool;
  /** The regular file holding the data (the loop device's backing file for loopdev). */
  dataFile: string;
  /** What to drop from the page cache for a cold read. */
  cacheFiles: string[];
  cleanup(): Promise<void>;
}

export async function openBackend(b: Backend, dir: string, o: { dataSize: number; metadataSize: number; blockSize?: number; discard?: 'passdown' | 'nopassdown' }): Promise<BackendPool> {
  const common = { dataSize: o.dataSize, metadataSize: o.metadataSize, blockSize: o.blockSize ?? 128, discard: o.discard ?? 'passdown' as const, lowWaterMark: 0 };
  const poolDir = path.join(dir, 'pool');
  if (b === 'loop-lvm' || b === 'direct-lvm file') {
    const pool = Pool.create(poolDir, { ...common, mode: b === 'loop-lvm' ? 'loop-lvm' : 'direct-lvm' });
    const dataFile = path.join(poolDir, 'data');
    return { pool, dataFile, cacheFiles: [dataFile], cleanup: async () => { await pool.close(); } };
  }
  // A loop block device over a preallocated file: what an LV looks like to the pool.
  const backing = path.join(dir, 'lv-data');
  const fa = host.run('fallocate', ['-l', String(o.dataSize), backing]);
  if (!fa.ok) throw new ThinError('E_IO', `fallocate ${backing}: ${fa.error}`);
  const loop = host.attachLoop(backing);
  let pool: Pool;
  try {
    pool = Pool.create(poolDir, { ...common, mode: 'direct-lvm', dataDev: loop });
  } catch (e) {
    host.detachLoop(loop);
    throw e;
  }
  return {
    pool, dataFile: backing, cacheFiles: [backing, loop],
    cleanup: async () => { try { await pool.close(); } finally { host.detachLoop(loop); } },
  };
}

const WORKLOADS = ['seq write 1M (provisioning)', 'random write 4K', 'copy-on-write 4K on a snapshot', 'seq read 1M cold', 'seq read 1M warm', 'random read 4K cold', 'random read 4K warm', 'layer removal (discard + delete)'] as const;
type Workload = typeof WORKLOADS[number];

interface Trial {
  ops: Map<Workload, OpsResult>;
  apparentBytes: number;
  allocatedBytes: number;
  mappedBytes: number;
  extents: number | undefined;
  cachedAfterWrites: number | undefined;
  cachedAfterWarmReads: number | undefined;
  meminfoCachedDelta: number;
  writtenBackBytes: number;
  dirtyAfterClose: number;
  allocatedAfterRemoval: number;
}

async function trial(b: Backend, ctx: ExperimentContext, seed: number): Promise<Trial> {
  const S = ctx.size;
  const n4k = ctx.quick ? 150 : 4000;
  const dir = host.mkTemp(ctx.workDir, 'lvd-');
  const wbBefore = host.pagesWrittenBack();
  const cachedBefore = host.meminfo().cached;
  const bp = await openBackend(b, dir, { dataSize: 2 * S + 4 * MiB, metadataSize: 16 * MiB });
  const { pool } = bp;
  const ops = new Map<Workload, OpsResult>();
  const chunk = pool.chunkBytes;
  try {
    await pool.createThin(1, S);
    const big = payload(MiB, seed);
    ops.set('seq write 1M (provisioning)', await timeOps(S / MiB, MiB, (i) => pool.write(1, i * MiB, big)));
    const small = payload(4 * KiB, seed + 1);
    let r = new Rng(seed);
    ops.set('random write 4K', await timeOps(n4k, 4 * KiB, () => pool.write(1, r.int(S / (4 * KiB)) * 4 * KiB, small)));
    await pool.createSnap(2, 1);
    // Distinct chunks, so every write breaks sharing (copies a chunk).
    const chunks = Math.min(n4k, S / chunk);
    const order = shuffle(S / chunk, new Rng(seed + 2)).slice(0, chunks);
    ops.set('copy-on-write 4K on a snapshot', await timeOps(chunks, 4 * KiB, (i) => pool.write(2, order[i] * chunk, small)));
    const cachedAfterWrites = host.cachedBytes(bp.dataFile);
    const meminfoCachedDelta = host.meminfo().cached - cachedBefore;
    await pool.flush();
    const drop = () => { for (const f of bp.cacheFiles) host.dropFileCache(f); };
    drop();
    ops.set('seq read 1M cold', await timeOps(S / MiB, MiB, (i) => pool.read(1, i * MiB, MiB)));
    ops.set('seq read 1M warm', await timeOps(S / MiB, MiB, (i) => pool.read(1, i * MiB, MiB)));
    drop();
    r = new Rng(seed + 3);
    const roffs = Array.from({ length: n4k }, () => r.int(S / (4 * KiB)) * 4 * KiB);
    ops.set('random read 4K cold', await timeOps(n4k, 4 * KiB, (i) => pool.read(1, roffs[i], 4 * KiB)));
    ops.set('random read 4K warm', await timeOps(n4k, 4 * KiB, (i) => pool.read(1, roffs[i], 4 * KiB)));
    const cachedAfterWarmReads = host.cachedBytes(bp.dataFile);
    const st = pool.status();
    const space = host.fileSpace(bp.dataFile);
    const extents = host.extentCount(bp.dataFile);
    // Removing a layer the way Docker does with dm.blkdiscard: discard the whole device, then delete it.
    const ids = [2, 1];
    ops.set('layer removal (discard + delete)', await timeOps(ids.length, 0, async (i) => {
      await pool.discard(ids[i], 0, S);
      await pool.deleteDevice(ids[i]);
    }));
    await pool.flush();
    const allocatedAfterRemoval = host.fileSpace(bp.dataFile).allocatedBytes;
    await bp.cleanup();
    const mi = host.meminfo();
    return {
      ops, apparentBytes: space.apparentBytes, allocatedBytes: space.allocatedBytes, mappedBytes: st.usedDataBlocks * chunk, extents,
      cachedAfterWrites, cachedAfterWarmReads, meminfoCachedDelta,
      writtenBackBytes: (host.pagesWrittenBack() - wbBefore) * host.PAGE_SIZE, dirtyAfterClose: mi.dirty + mi.writeback, allocatedAfterRemoval,
    };
  } catch (e) {
    // The trial already failed: that failure is the one reported; the scratch pool's
    // cleanup is best effort on the way out (its directory is removed by the experiment).
    await bp.cleanup().catch(() => undefined);
    throw e;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function shuffle(n: number, r: Rng): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Space given back to the host by removing a layer, with discard passdown on and off. */
interface RemovalTrial { allocatedBefore: number; allocatedAfter: number; mappedBefore: number; mappedAfter: number }
type RemovalConfig = `${Backend} / ${'passdown' | 'nopassdown'}`;

async function removalTrial(cfg: RemovalConfig, ctx: ExperimentContext, seed: number): Promise<RemovalTrial> {
  const [b, mode] = cfg.split(' / ') as [Backend, 'passdown' | 'nopassdown'];
  const S = ctx.size / 2;
  const dir = host.mkTemp(ctx.workDir, 'rm-');
  const bp = await openBackend(b, dir, { dataSize: S + 4 * MiB, metadataSize: 8 * MiB, discard: mode });
  try {
    const { pool } = bp;
    await pool.createThin(1, S);
    const buf = payload(MiB, seed);
    for (let o = 0; o < S; o += MiB) await pool.write(1, o, buf);
    await pool.flush();
    const allocatedBefore = host.fileSpace(bp.dataFile).allocatedBytes;
    const mappedBefore = pool.status().usedDataBlocks * pool.chunkBytes;
    await pool.discard(1, 0, S);
    await pool.deleteDevice(1);
    await pool.flush();
    const mappedAfter = pool.status().usedDataBlocks * pool.chunkBytes;
    await bp.cleanup();
    return { allocatedBefore, allocatedAfter: host.fileSpace(bp.dataFile).allocatedBytes, mappedBefore, mappedAfter };
  } catch (e) {
    // The trial already failed: that failure is the one reported; the scratch pool's
    // cleanup is best effort on the way out (its directory is removed by the experiment).
    await bp.cleanup().catch(() => undefined);
    throw e;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const med = (xs: (number | undefined)[]): number => summarize(xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x))).median;

export const loopVsDirect: Experiment = {
  name: 'loop-vs-direct',
  title: 'loop-lvm vs direct-lvm',
  question: 'What does Docker\'s loop-lvm (sparse files, buffered) cost against direct-lvm (preallocated, O_DIRECT), in throughput, latency, host space, fragmentation and page cache?',
  sizeMeans: 'the thin device the workload writes',
  defaults: { size: 256 * MiB, repeat: 3 },
  quick: { size: 8 * MiB, repeat: 2 },
  tools: ['filefrag', 'fincore', 'losetup', 'dd', 'fallocate'],
  async run(ctx) {
    // direct-lvm opens its data device with O_DIRECT, which needs the addon's aligned buffers.
    const noDirect = hot.native ? undefined : `direct-lvm needs the native addon for O_DIRECT (${loadError ?? 'not loaded'})`;
    if (noDirect) ctx.skip('direct-lvm on a preallocated file', noDirect);
    const backends = ALL_BACKENDS.filter((b) => {
      if (b === 'loop-lvm') return true;
      if (noDirect) return false;
      if (b !== 'direct-lvm loopdev') return true;
      const why = host.loopUnavailable() ?? host.toolMissing('fallocate', 'util-linux');
      if (why) ctx.skip('direct-lvm on a loop block device', why);
      return !why;
    });
    for (const [tool, pkg, what] of [['filefrag', 'e2fsprogs', 'extent counts'], ['fincore', 'util-linux', 'page-cache residency']]) {
      const why = host.toolMissing(tool, pkg);
      if (why) ctx.skip(what, why);
    }
    requireSizeInMiB(ctx.size, 4);
    const trials = await interleave(backends, ctx.repeat, (b, rep) => trial(b, ctx, 1000 + rep), ctx.progress, 'loop-vs-direct');
    const rcfgs: RemovalConfig[] = backends.flatMap((b) => [`${b} / passdown`, `${b} / nopassdown`] as RemovalConfig[]);
    const removals = await interleave(rcfgs, ctx.repeat, (c, rep) => removalTrial(c, ctx, 2000 + rep), ctx.progress, 'layer removal');

    const stats: WorkloadStats[] = [];
    for (const w of WORKLOADS) for (const b of backends) stats.push(workloadStats(w, b, trials.get(b)!.map((t) => t.ops.get(w)!)));
    const thr = (w: string) => stats.filter((s) => s.workload === w);
    const tputRows = (ws: readonly string[]): Row[] => ws.flatMap((w) => thr(w).map((s) => ({ workload: w, backend: s.config, 'MiB/s median': s.mibPerSec.median, 'MiB/s min': s.mibPerSec.min, 'MiB/s max': s.mibPerSec.max, 'p50 ms': s.p50Ms, 'p99 ms': s.p99Ms })));
    const writeW = WORKLOADS.slice(0, 3);
    const readW = WORKLOADS.slice(3, 7);
    const latRows: Row[] = stats.filter((s) => s.workload !== 'layer removal (discard + delete)').map((s) => ({ workload: s.workload, backend: s.config, 'p50 ms': s.p50Ms, 'p99 ms': s.p99Ms, 'IOPS median': s.iops.median }));
    const charts1: ChartSpec[] = [
      { id: 'write-throughput', title: 'Write throughput (median, bars: min..max)', mark: 'bar', x: { field: 'workload', title: 'workload' }, y: { field: 'MiB/s median', title: 'MiB/s' }, series: { field: 'backend', title: 'backend' }, range: { low: 'MiB/s min', high: 'MiB/s max' }, data: tputRows(writeW) },
      { id: 'read-throughput', title: 'Read throughput, cold and warm cache (median, bars: min..max)', mark: 'bar', x: { field: 'workload', title: 'workload' }, y: { field: 'MiB/s median', title: 'MiB/s' }, series: { field: 'backend', title: 'backend' }, range: { low: 'MiB/s min', high: 'MiB/s max' }, data: tputRows(readW) },
      { id: 'latency-p99', title: 'p99 latency per operation', mark: 'bar', x: { field: 'workload', title: 'workload' }, y: { field: 'p99 ms', title: 'p99 latency (ms)' }, series: { field: 'backend', title: 'backend' }, data: latRows.map((r) => ({ workload: r.workload, backend: r.backend, 'p99 ms': r['p99 ms'], 'p50 ms': r['p50 ms'] })) },
    ];
    const hostRows: Row[] = backends.map((b) => {
      const ts = trials.get(b)!;
      return {
        backend: b, 'apparent MiB': mib(med(ts.map((t) => t.apparentBytes))), 'allocated MiB': mib(med(ts.map((t) => t.allocatedBytes))),
        'mapped data MiB': mib(med(ts.map((t) => t.mappedBytes))), extents: med(ts.map((t) => t.extents)),
      };
    });
    const cacheRows: Row[] = backends.map((b) => {
      const ts = trials.get(b)!;
      return {
        backend: b, 'data file cached after writes MiB': mib(med(ts.map((t) => t.cachedAfterWrites))), 'data file cached after warm reads MiB': mib(med(ts.map((t) => t.cachedAfterWarmReads))),
        'meminfo Cached delta MiB': mib(med(ts.map((t) => t.meminfoCachedDelta))), 'written back by kernel MiB': mib(med(ts.map((t) => t.writtenBackBytes))),
        'Dirty+Writeback after close MiB': mib(med(ts.map((t) => t.dirtyAfterClose))),
      };
    });
    const removalRows: Row[] = rcfgs.map((c) => {
      const rs = removals.get(c)!;
      const before = med(rs.map((r) => r.allocatedBefore));
      const after = med(rs.map((r) => r.allocatedAfter));
      return { config: c, 'allocated before MiB': mib(before), 'allocated after MiB': mib(after), 'given back to host MiB': mib(before - after), 'pool mapped before MiB': mib(med(rs.map((r) => r.mappedBefore))), 'pool mapped after MiB': mib(med(rs.map((r) => r.mappedAfter))) };
    });
    const sections: Section[] = [
      { title: 'Throughput and latency', text: [`Each backend ran the same workload ${ctx.repeat} time(s), interleaved. Writes and reads are one at a time (queue depth 1).`], charts: charts1, tables: [statsTable(stats)] },
      { title: 'Host space and fragmentation', text: ['Apparent size is st_size; allocated is st_blocks x 512 (what the host filesystem really holds); extents from filefrag. Measured after the write and read workloads, before layer removal.'], charts: [
        { id: 'host-space', title: 'Data file: apparent vs allocated vs mapped', mark: 'bar', x: { field: 'backend', title: 'backend' }, y: { field: 'MiB', title: 'MiB' }, series: { field: 'measure', title: 'measure' }, data: hostRows.flatMap((r) => ['apparent MiB', 'allocated MiB', 'mapped data MiB'].map((k) => ({ backend: r.backend, measure: k.replace(' MiB', ''), MiB: r[k] }))) },
      ], tables: [{ title: 'Host space per backend (median over repeats)', columns: Object.keys(hostRows[0]), rows: hostRows.map((r) => Object.values(r)) }] },
      { title: 'Page cache ("double caching") and writeback', text: ['fincore gives the data file\'s bytes resident in the page cache; /proc/meminfo Cached and Dirty+Writeback and /proc/vmstat nr_written are machine-wide (other processes add noise).'], charts: [
        { id: 'page-cache', title: 'Data file bytes in the page cache', mark: 'bar', x: { field: 'backend', title: 'backend' }, y: { field: 'MiB', title: 'MiB cached' }, series: { field: 'when', title: 'when' }, data: cacheRows.flatMap((r) => [['after writes', 'data file cached after writes MiB'], ['after warm reads', 'data file cached after warm reads MiB']].map(([w, k]) => ({ backend: r.backend, when: w, MiB: r[k] }))) },
      ], tables: [{ title: 'Cache and writeback per backend (median over repeats)', columns: Object.keys(cacheRows[0]), rows: cacheRows.map((r) => Object.values(r)) }] },
      { title: 'Space given back by removing a layer', text: [`A thin device of ${ctx.size / 2 / MiB} MiB written, flushed, then discarded whole and deleted (Docker's dm.blkdiscard), with the pool's discard passdown on and off.`], charts: [
        { id: 'removal', title: 'Host allocation given back by a layer removal', mark: 'bar', x: { field: 'config', title: 'backend / discard' }, y: { field: 'given back to host MiB', title: 'MiB given back' }, data: removalRows },
      ], tables: [{ title: 'Layer removal (median over repeats)', columns: Object.keys(removalRows[0]), rows: removalRows.map((r) => Object.values(r)) }] },
    ];
    const findings: string[] = [];
    for (const r of hostRows) findings.push(`${r.backend}: the host holds ${fmtMiB(r['allocated MiB'])} for ${fmtMiB(r['mapped data MiB'])} of mapped data in a ${fmtMiB(r['apparent MiB'])} file (${r.extents ?? 'n/a'} extents).`);
    for (const r of removalRows) findings.push(`${r.config}: removing a ${fmtMiB(r['pool mapped before MiB'])} layer gave ${fmtMiB(r['given back to host MiB'])} back to the host.`);
    for (const r of removalRows) {
      if (String(r.config).startsWith('direct-lvm') && String(r.config).endsWith('/ passdown') && (r['given back to host MiB'] as number) > 0) {
        findings.push(`${r.config}: passdown punched holes in the preallocated backing file, so it is no longer fully allocated: direct-lvm on a file loses its "no sparse surprises" guarantee after a discard (on a real LV the discard goes to the device instead).`);
      }
    }
    const cold = thr('random read 4K cold');
    const warm = thr('random read 4K warm');
    for (const c of cold) {
      const w = warm.find((x) => x.config === c.config)!;
      findings.push(`${c.config}: 4K random reads ${c.iops.median.toFixed(0)} IOPS cold vs ${w.iops.median.toFixed(0)} warm (p99 ${c.p99Ms.toFixed(3)} vs ${w.p99Ms.toFixed(3)} ms).`);
    }
    return {
      params: { size: ctx.size, repeat: ctx.repeat, quick: ctx.quick, 'data block size': '64 KiB', 'random 4K ops per trial': ctx.quick ? 150 : 4000, backends: backends.join(', ') },
      method: [
        'Every configuration runs the same workload with the same seeds; repeats are interleaved (A B C A B C ...). Throughput is the median over repeats with min and max; latency percentiles are over every operation of every repeat.',
        'Cold reads: after pool.flush() (data synced), each data file (and for the loop device, the block device too) has its clean pages dropped with `dd if=FILE iflag=nocache count=0` (POSIX_FADV_DONTNEED on that file only); warm reads repeat the same reads right after.',
        'direct-lvm file: thinsim preallocates the data file and opens it O_DIRECT. direct-lvm loopdev: a file preallocated with fallocate, attached with `losetup --direct-io=on`, the pool opens /dev/loopN O_DIRECT.',
        'Layer removal: pool.discard over the whole device, then delete, then flush; host allocation from stat before and after.',
        'On a virtual machine the host below the virtual disk may cache it too, so O_DIRECT reads can still get faster when repeated ("cold" is cold for this kernel only).',
      ],
      findings,
      sections,
    };
  },
};

const fmtMiB = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(1)} MiB` : 'n/a');

function statsTable(stats: WorkloadStats[]): Table {
  return {
    title: 'All workloads: throughput over repeats, latency over every operation',
    columns: ['workload', 'backend', 'repeats', 'MiB/s median', 'MiB/s min', 'MiB/s max', 'IOPS median', 'p50 ms', 'p99 ms'],
    rows: stats.map((s) => [s.workload, s.config, s.repeats, s.mibPerSec.median, s.mibPerSec.min, s.mibPerSec.max, s.iops.median, s.p50Ms, s.p99Ms]),
  };
}
