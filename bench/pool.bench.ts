/**
 * Pool-engine benchmarks: the data path and snapshot operations of src/pool against
 * plain file I/O (or against the pool itself at a smaller scale) in the same process,
 * on temp dirs in one parent under os.tmpdir(), so both sides share a filesystem.
 *
 * Targets (pool-engine issue), each a ratio against a baseline measured in this run:
 *  1. sequential 64 KiB writes provisioning a fresh thin device, final flush() included:
 *     >= 0.7x a plain sequential write of the same bytes to a sparse file (fs.promises,
 *     same queue depth, fdatasync included); queue depth 1 and 8.
 *  2. 4 KiB random writes to a snapshot, each breaking sharing of a 64 KiB chunk: IOPS
 *     and the ratio to plain 4 KiB random writes on a file (same count, same offsets).
 *     No target: a sharing break copies 64 KiB for every 4 KiB written.
 *  3. sequential read of a fully mapped device: >= 0.8x a plain read of a file of the
 *     same size. Both warm (page cache; nothing dropped), 64 KiB and 1 MiB requests.
 *  4. create_snap of a device with 64 GiB mapped within 1.5x the time of one with 1 GiB
 *     mapped (median of several snapshots each; metadata built without data I/O).
 *  5. 4 KiB random reads at snapshot depth 128 >= 0.9x the rate at depth 1. Optional
 *     contrast: a qcow2 backing chain of the same depth read through qemu-io.
 * Method: I/O-bound cases (writes with their final sync) run best of 3 (sequential
 * writes: 5), alternating which side goes first. Warm reads are CPU-bound, so other
 * processes' time slices dominate their noise: subject and baseline alternate in pieces
 * of 1-5 ms over 9 passes and each side's time is the sum of its best time per piece
 * (see interleaved()). create_snap compares medians of interleaved snapshots. Raw
 * numbers, including the per-pass ratios, go to bench/results/pool.json.
 * THINSIM_POOL_BENCH=write,read,depth,cow,snap runs a subset.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FileDevice } from '../src/io/file-device';
import { Pool } from '../src/pool/pool';
import { ThinMetadata } from '../src/thin/metadata';
import { Rand, pattern } from '../support/random';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';

const SUITE = 'pool';
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const CHUNK = 64 * KiB;
const BLOCK_SECTORS = CHUNK / 512;
const TRIALS = 3;
/** The sequential-write target sits closest to its ratio: two more trials. */
const WRITE_TRIALS = 5;
/** Passes of the interleaved (paired) measurement used for warm reads. */
const READ_PASSES = 9;
/** Segment of a sequential-read pass: each side reads this much, then the other side. */
const READ_SEGMENT = 2 * MiB;

/** Size of the sequential-write and mapped-device fixtures (the issue asks 256 MiB - 1 GiB). */
const SEQ_BYTES = 256 * MiB;
/** Sharing breaks per trial in case 2: one 4 KiB write in each of this many distinct chunks. */
const COW_WRITES = 4096;
/** Random 4 KiB reads per pass in case 5. */
const DEPTH_READS = 4000;
const CHAIN_DEPTH = 128;
/** Snapshots timed per device in case 4. */
const SNAPS = 9;

/** Raw measurements, saved with the rows in bench/results/pool.json. */
const details: Record<string, unknown> = {};

// ------------------------------------------------------------------ helpers

/** Run `count` operations with at most `depth` in flight, issued in index order. */
async function queue(count: number, depth: number, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(depth, count) }, worker));
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/**
 * `trials` rounds of subject and baseline, alternating which goes first so warm-up and
 * slow phases of a busy machine do not always favour one side. Seconds per round.
 */
async function alternate(trials: number, subject: () => Promise<number>, baseline: () => Promise<number>): Promise<{ ours: number[]; base: number[] }> {
  const ours: number[] = [];
  const base: number[] = [];
  for (let t = 0; t < trials; t++) {
    if (t % 2 === 0) {
      base.push(await baseline());
      ours.push(await subject());
    } else {
      ours.push(await subject());
      base.push(await baseline());
    }
  }
  return { ours, base };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const sig4 = (x: number): number => Number(x.toPrecision(4));
const mibps = (bytes: number, secs: number): number => sig4(bytes / MiB / secs);

function row(caseName: string, subject: string, baseline: string, subjectOps: number, baselineOps: number, target?: number, note?: string): BenchRow {
  return { suite: SUITE, case: caseName, subject, baseline, subjectOps, baselineOps, ratio: subjectOps / baselineOps, target, note };
}

/** A loop-lvm pool on sparse files; the periodic commit stays on, as in real use. */
function newPool(dir: string, dataSize: number, metadataSize = 256 * MiB): Pool {
  return Pool.create(dir, { dataSize, metadataSize, blockSize: BLOCK_SECTORS, mode: 'loop-lvm' });
}

/** A sparse file of `size` bytes (what the baseline writes into, like the pool's data file). */
function sparseFile(file: string, size: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
}

/**
 * Paired measurement for warm reads, which are CPU-bound and so at the mercy of anything
 * else running on the machine: each pass walks the same work in `segments` short pieces
 * (a few ms each) and runs every piece for the subject and then for the baseline
 * (alternating who goes first), so both sides see the same background load. A side's
 * time is the sum over pieces of that piece's best time over all passes: best-of-N at
 * the grain of a piece, since a longer window rarely escapes other processes' time
 * slices. Per-pass sums are returned too (for the record).
 */
async function interleaved(
  passes: number,
  segments: number,
  subject: (segment: number) => Promise<unknown>,
  baseline: (segment: number) => Promise<unknown>,
): Promise<{ ours: number; base: number; ratios: number[]; oursAll: number[]; baseAll: number[] }> {
  const oursAll: number[] = [];
  const baseAll: number[] = [];
  const oursBest = new Array<number>(segments).fill(Infinity);
  const baseBest = new Array<number>(segments).fill(Infinity);
  for (let p = 0; p < passes; p++) {
    let o = 0;
    let b = 0;
    for (let s = 0; s < segments; s++) {
      let to: number;
      let tb: number;
      if ((p + s) % 2 === 0) {
        to = await timed(() => subject(s));
        tb = await timed(() => baseline(s));
      } else {
        tb = await timed(() => baseline(s));
        to = await timed(() => subject(s));
      }
      o += to;
      b += tb;
      oursBest[s] = Math.min(oursBest[s], to);
      baseBest[s] = Math.min(baseBest[s], tb);
    }
    oursAll.push(o);
    baseAll.push(b);
  }
  const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0);
  return { ours: sum(oursBest), base: sum(baseBest), ratios: oursAll.map((o, i) => baseAll[i] / o), oursAll, baseAll };
}

// ------------------------------------------------------------------ 1. sequential provisioning writes

async function seqWrite(root: string): Promise<BenchRow[]> {
  const n = SEQ_BYTES / CHUNK;
  const buf = pattern(1, CHUNK);
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  for (const depth of [1, 8]) {
    let trial = 0;
    const { ours, base } = await alternate(WRITE_TRIALS, async () => {
      const dir = path.join(root, `seq-pool-${depth}-${trial++}`);
      const pool = newPool(dir, 2 * SEQ_BYTES);
      await pool.createThin(1, SEQ_BYTES);
      const secs = await timed(async () => {
        await queue(n, depth, (i) => pool.write(1, i * CHUNK, buf));
        await pool.flush();
      });
      if (pool.status().usedDataBlocks !== n) throw new Error(`seq write: expected ${n} provisioned blocks, got ${pool.status().usedDataBlocks}`);
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
      return secs;
    }, async () => {
      // Same size as the pool's data file, also sparse.
      const file = path.join(root, `seq-base-${depth}-${trial}`);
      sparseFile(file, 2 * SEQ_BYTES);
      const fh = await fsp.open(file, 'r+');
      const secs = await timed(async () => {
        await queue(n, depth, (i) => fh.write(buf, 0, CHUNK, i * CHUNK));
        await fh.datasync();
      });
      await fh.close();
      fs.rmSync(file);
      return secs;
    });
    const o = n / Math.min(...ours);
    const b = n / Math.min(...base);
    raw[`qd${depth}`] = { oursSeconds: ours.map(sig4), baselineSeconds: base.map(sig4), oursMiBps: mibps(SEQ_BYTES, Math.min(...ours)), baselineMiBps: mibps(SEQ_BYTES, Math.min(...base)) };
    rows.push(row(
      `seq 64 KiB writes provisioning ${SEQ_BYTES / MiB} MiB, QD${depth}, + flush`,
      'pool.write + flush', 'fs.promises write to sparse file + fdatasync', o, b, 0.7,
      `best of ${WRITE_TRIALS}; ${mibps(SEQ_BYTES, Math.min(...ours))} vs ${mibps(SEQ_BYTES, Math.min(...base))} MiB/s`,
    ));
  }
  details.seqWrite = { bytes: SEQ_BYTES, request: CHUNK, ...raw };
  return rows;
}

// ------------------------------------------------------------------ fixture: a fully mapped device

interface Mapped {
  pool: Pool;
  dev: number;
  file: string;
}

/** Pool with thin 1 fully written (SEQ_BYTES), and a plain file holding the same bytes. */
async function mappedFixture(root: string, extraData: number): Promise<Mapped> {
  const dir = path.join(root, 'mapped-pool');
  const pool = newPool(dir, SEQ_BYTES + extraData);
  const dev = 1;
  await pool.createThin(dev, SEQ_BYTES);
  const file = path.join(root, 'mapped-file');
  sparseFile(file, SEQ_BYTES);
  const fh = await fsp.open(file, 'r+');
  for (let i = 0; i < SEQ_BYTES / CHUNK; i++) {
    const b = pattern(1000 + i, CHUNK);
    await pool.write(dev, i * CHUNK, b);
    await fh.write(b, 0, CHUNK, i * CHUNK);
  }
  await pool.flush();
  await fh.datasync();
  await fh.close();
  return { pool, dev, file };
}

// ------------------------------------------------------------------ 3. sequential read, warm

async function seqRead(m: Mapped): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  const fh = await fsp.open(m.file, 'r');
  try {
    // Warm both sides (page cache and metadata cache) and check they hold the same bytes.
    for (let off = 0; off < SEQ_BYTES; off += MiB) {
      const a = await m.pool.read(m.dev, off, MiB);
      const b = Buffer.allocUnsafe(MiB);
      await fh.read(b, 0, MiB, off);
      if (!a.equals(b)) throw new Error(`seq read: pool and file differ at ${off}`);
    }
    for (const [req, depth] of [[64 * KiB, 1], [MiB, 1], [64 * KiB, 8]]) {
      const n = SEQ_BYTES / req;
      const per = READ_SEGMENT / req;
      const r = await interleaved(
        READ_PASSES,
        SEQ_BYTES / READ_SEGMENT,
        (s) => queue(per, depth, (i) => m.pool.read(m.dev, (s * per + i) * req, req)),
        (s) => queue(per, depth, async (i) => {
          // A fresh buffer per request, as the pool returns one (uninitialised: the cheapest).
          const b = Buffer.allocUnsafe(req);
          const { bytesRead } = await fh.read(b, 0, req, (s * per + i) * req);
          if (bytesRead !== req) throw new Error('short read');
        }),
      );
      const label = `${req / KiB} KiB QD${depth}`;
      raw[label] = {
        oursSeconds: r.oursAll.map(sig4), baselineSeconds: r.baseAll.map(sig4), passRatios: r.ratios.map(sig4),
        oursMiBps: mibps(SEQ_BYTES, r.ours), baselineMiBps: mibps(SEQ_BYTES, r.base),
      };
      rows.push(row(
        `seq read ${SEQ_BYTES / MiB} MiB fully mapped, ${label}, warm`,
        'pool.read', 'fs.promises read of file', n / r.ours, n / r.base, 0.8,
        `both warm in page cache; best per segment over ${READ_PASSES} interleaved passes (pass ratios ${sig4(Math.min(...r.ratios))}-${sig4(Math.max(...r.ratios))}); ${mibps(SEQ_BYTES, r.ours)} vs ${mibps(SEQ_BYTES, r.base)} MiB/s`,
      ));
    }
  } finally {
    await fh.close();
  }
  details.seqRead = { bytes: SEQ_BYTES, cache: 'warm (read once before timing; nothing dropped)', ...raw };
  return rows;
}

// ------------------------------------------------------------------ 5. random reads at snapshot depth

async function depthReads(root: string, m: Mapped): Promise<BenchRow[]> {
  const rand = new Rand(5);
  const blocks = SEQ_BYTES / 4096;
  // A chain: each snapshot of the previous, each with a few 4 KiB writes of its own.
  const first = 1001;
  let prev = m.dev;
  const tBuild = performance.now();
  for (let d = 1; d <= CHAIN_DEPTH; d++) {
    const id = first + d - 1;
    await m.pool.createSnap(id, prev);
    for (let w = 0; w < 4; w++) await m.pool.write(id, rand.int(blocks) * 4096, pattern(7000 + d * 4 + w, 4096));
    prev = id;
  }
  await m.pool.flush();
  const buildSeconds = (performance.now() - tBuild) / 1000;
  const shallow = first;
  const deep = prev;
  const offsets = Array.from({ length: DEPTH_READS }, () => rand.int(blocks) * 4096);
  // Warm both devices' metadata paths.
  for (const id of [shallow, deep]) for (let i = 0; i < offsets.length; i += 8) await m.pool.read(id, offsets[i], 4096);
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  for (const depth of [1, 8]) {
    const per = 250;
    const r = await interleaved(
      READ_PASSES,
      offsets.length / per,
      (s) => queue(per, depth, (i) => m.pool.read(deep, offsets[s * per + i], 4096)),
      (s) => queue(per, depth, (i) => m.pool.read(shallow, offsets[s * per + i], 4096)),
    );
    raw[`qd${depth}`] = { depth1Seconds: r.baseAll.map(sig4), depthNSeconds: r.oursAll.map(sig4), passRatios: r.ratios.map(sig4) };
    rows.push(row(
      `4 KiB random reads at snapshot depth ${CHAIN_DEPTH} vs 1, QD${depth}`,
      `depth ${CHAIN_DEPTH}`, 'depth 1', offsets.length / r.ours, offsets.length / r.base, 0.9,
      `${offsets.length} reads, same offsets, warm; best per segment over ${READ_PASSES} interleaved passes (pass ratios ${sig4(Math.min(...r.ratios))}-${sig4(Math.max(...r.ratios))})`,
    ));
  }
  const qcow = qcowContrast(root);
  if (qcow) rows.push(qcow);
  details.depthReads = { chainDepth: CHAIN_DEPTH, writesPerSnapshot: 4, reads: offsets.length, chainBuildSeconds: sig4(buildSeconds), ...raw };
  return rows;
}

/**
 * Contrast only (no target): qcow2 backing chains make a read walk down the chain
 * until some layer holds the cluster. Same depth, same kind of reads, through
 * qemu-io (one process per run, so its start-up is in both sides and cancels
 * only roughly). Skipped when qemu-img or qemu-io is missing.
 */
function qcowContrast(root: string): BenchRow | undefined {
  const have = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!have('qemu-img') || !have('qemu-io')) {
    details.qcow2 = 'skipped: qemu-img or qemu-io not found';
    return undefined;
  }
  const dir = path.join(root, 'qcow');
  fs.mkdirSync(dir);
  const size = 64 * MiB;
  // Fixed-width names, so one layer's header can be cloned and its backing name patched.
  const name = (d: number): string => `l${String(d).padStart(3, '0')}.qcow2`;
  const img = (d: number): string => path.join(dir, name(d));
  const io = (file: string, cmds: string[]): string =>
    execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const t0 = performance.now();
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', img(0), String(size)]);
  io(img(0), [`write -P 0x5a 0 ${size}`]);
  // An empty layer made by qemu-img (-u: without opening its backing file), cloned for
  // every depth with the backing file name patched in place: 128 qemu-img runs under
  // load take longer than the measurement itself.
  const template = path.join(dir, 'template.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-o', 'cluster_size=65536', '-F', 'qcow2', '-b', name(0), template, String(size)]);
  const layer = fs.readFileSync(template);
  const at = layer.indexOf(name(0));
  if (at < 0 || layer.indexOf(name(0), at + 1) >= 0) throw new Error('qcow2 contrast: backing file name not found once in the template header');
  const rand = new Rand(9);
  const writes: string[] = [];
  const written = new Set<number>();
  for (let d = 1; d <= CHAIN_DEPTH; d++) {
    layer.write(name(d - 1), at, 'latin1');
    fs.writeFileSync(img(d), layer);
    // A few writes per layer, like our chain, all from one qemu-io with each layer opened
    // detached from its backing file (opening the chain below each one would make this
    // O(depth^2)); the rest of each written cluster then reads as zeros: fine for timing.
    writes.push('-c', `open json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: img(d) }, backing: null })}`);
    for (let w = 0; w < 4; w++) {
      const off = rand.int(size / 4096) * 4096;
      written.add(Math.floor(off / CHUNK));
      writes.push('-c', `write -P ${d & 0xff} ${off} 4096`);
    }
    writes.push('-c', 'close');
  }
  execFileSync('qemu-io', writes, { stdio: 'ignore' });
  const buildSeconds = (performance.now() - t0) / 1000;
  // The chain is whole: a cluster no layer wrote reads the base's bytes through all 128.
  let untouched = 0;
  while (written.has(untouched)) untouched++;
  const check = io(img(CHAIN_DEPTH), [`read -P 0x5a ${untouched * CHUNK} 4096`]);
  if (/fail/i.test(check)) throw new Error(`qcow2 contrast: the chain does not reach the base: ${check}`);
  const reads = Array.from({ length: 2000 }, () => `read ${rand.int(size / 4096) * 4096} 4096`);
  // qemu-io's start-up (opening the chain) differs with depth: time it per image and subtract.
  const run = (file: string, cmds: string[]): number => {
    const a = performance.now();
    io(file, cmds);
    return (performance.now() - a) / 1000;
  };
  const t1: number[] = [];
  const tN: number[] = [];
  const s1: number[] = [];
  const sN: number[] = [];
  for (let t = 0; t < TRIALS; t++) {
    s1.push(run(img(1), ['read 0 4096']));
    sN.push(run(img(CHAIN_DEPTH), ['read 0 4096']));
    t1.push(run(img(1), reads));
    tN.push(run(img(CHAIN_DEPTH), reads));
  }
  const o = reads.length / Math.max(1e-6, Math.min(...tN) - Math.min(...sN));
  const base = reads.length / Math.max(1e-6, Math.min(...t1) - Math.min(...s1));
  details.qcow2 = {
    depth: CHAIN_DEPTH, reads: reads.length, buildSeconds: sig4(buildSeconds), depth1Seconds: t1.map(sig4), depthNSeconds: tN.map(sig4),
    startupDepth1Seconds: s1.map(sig4), startupDepthNSeconds: sN.map(sig4),
  };
  return row(
    `contrast: qcow2 backing chain, 4 KiB random reads, depth ${CHAIN_DEPTH} vs 1`,
    `qcow2 depth ${CHAIN_DEPTH}`, 'qcow2 depth 1', o, base, undefined,
    `qemu-io, ${reads.length} reads each, open time subtracted per depth; contrast only, no target`,
  );
}

// ------------------------------------------------------------------ 2. sharing breaks on a snapshot

async function cowWrites(m: Mapped): Promise<BenchRow[]> {
  const rand = new Rand(2);
  const chunks = SEQ_BYTES / CHUNK;
  const count = Math.min(COW_WRITES, chunks);
  // One 4 KiB write in each of `count` distinct chunks, in random order.
  const offsets = rand.shuffle(Array.from({ length: chunks }, (_, i) => i))
    .slice(0, count)
    .map((c) => c * CHUNK + rand.int(CHUNK / 4096) * 4096);
  const buf = pattern(3, 4096);
  const fh = await fsp.open(m.file, 'r+');
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  try {
    for (const depth of [1, 8]) {
      const oursSubmit: number[] = [];
      const { ours, base } = await alternate(TRIALS, () => cowTrial(m, depth, offsets, buf, oursSubmit), () => timed(async () => {
        await queue(count, depth, (i) => fh.write(buf, 0, 4096, offsets[i]));
        await fh.datasync();
      }));
      const o = count / Math.min(...ours);
      const b = count / Math.min(...base);
      raw[`qd${depth}`] = {
        oursSeconds: ours.map(sig4), oursBeforeFlushSeconds: oursSubmit.map(sig4), baselineSeconds: base.map(sig4),
        oursIops: Math.round(o), oursIopsBeforeFlush: Math.round(count / Math.min(...oursSubmit)), baselineIops: Math.round(b),
      };
      rows.push(row(
        `4 KiB random writes breaking sharing of 64 KiB chunks on a snapshot, QD${depth}, + flush`,
        'pool.write to snapshot + flush', 'fs.promises 4 KiB write to file + fdatasync', o, b, undefined,
        `${count} writes, same offsets; no target (each copies 64 KiB); ${Math.round(o)} IOPS incl. flush, ${Math.round(count / Math.min(...oursSubmit))} before it`,
      ));
    }
  } finally {
    await fh.close();
  }
  const qemu = await cowVsQemuImg(m, offsets, buf);
  if (qemu) rows.push(qemu.row);
  details.cowWrites = { writes: count, chunkBytes: CHUNK, copyBytesPerWrite: CHUNK, ...raw, qemuImgBench: qemu?.raw };
  return rows;
}

let nextSnap = 2001;

/**
 * One trial: a fresh snapshot of the untouched origin, so every write breaks sharing;
 * `offsets.length` 4 KiB writes at queue depth `depth`, then a flush. Seconds, flush
 * included; the time before the flush goes to `submit`.
 */
async function cowTrial(m: Mapped, depth: number, offsets: number[], buf: Uint8Array, submit: number[]): Promise<number> {
  const id = nextSnap++;
  await m.pool.createSnap(id, m.dev);
  const before = m.pool.status().usedDataBlocks;
  const t0 = performance.now();
  await queue(offsets.length, depth, (i) => m.pool.write(id, offsets[i], buf));
  submit.push((performance.now() - t0) / 1000);
  await m.pool.flush();
  const secs = (performance.now() - t0) / 1000;
  const broke = m.pool.status().usedDataBlocks - before;
  if (broke !== offsets.length) throw new Error(`cow writes: expected ${offsets.length} sharing breaks, got ${broke}`);
  await m.pool.deleteDevice(id);
  await m.pool.flush();
  return secs;
}

/**
 * The copy-on-write peer: `qemu-img bench -w -s 4k -S 64k -d 1` on a fresh qcow2 overlay
 * (64 KiB clusters) of a raw file holding the origin's bytes: the same number of 4 KiB
 * writes, each into its own cluster, so each copies 64 KiB from the backing file. qemu's
 * "Run completed" time (requests only, no open, no final flush) against ours with the
 * flush: the comparison leans towards qemu. Skipped when qemu-img is missing.
 */
async function cowVsQemuImg(m: Mapped, offsets: number[], buf: Uint8Array): Promise<{ row: BenchRow; raw: unknown } | undefined> {
  if (spawnSync('qemu-img', ['--version']).status !== 0) {
    console.log('pool: qemu-img not found: the qcow2 copy-on-write comparison is skipped (apt-get install qemu-utils)');
    return undefined;
  }
  const overlay = path.join(path.dirname(m.file), 'cow-overlay.qcow2');
  const submit: number[] = [];
  const { ours, base } = await alternate(TRIALS, () => cowTrial(m, 1, offsets, buf, submit), async () => {
    fs.rmSync(overlay, { force: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', '-b', m.file, '-F', 'raw', overlay]);
    const out = execFileSync('qemu-img', ['bench', '-w', '-s', '4096', '-S', `${CHUNK}`, '-c', `${offsets.length}`, '-d', '1', '-f', 'qcow2', overlay], { encoding: 'utf8' });
    const secs = /Run completed in ([\d.]+) seconds/.exec(out);
    if (!secs) throw new Error(`qemu-img bench: no run time in ${out}`);
    return Number(secs[1]);
  });
  fs.rmSync(overlay, { force: true });
  const o = offsets.length / Math.min(...ours);
  const b = offsets.length / Math.min(...base);
  return {
    raw: { oursSeconds: ours.map(sig4), qemuSeconds: base.map(sig4), oursIops: Math.round(o), qemuIops: Math.round(b) },
    row: row(
      '4 KiB writes breaking sharing of 64 KiB chunks, QD1: pool vs qcow2 overlay (64K clusters)',
      'pool.write to snapshot + flush', 'qemu-img bench -w -s 4k -S 64k -d 1', o, b, 1.0,
      `${offsets.length} writes; best of ${TRIALS}, interleaved; ${Math.round(o)} vs ${Math.round(b)} IOPS (qemu: requests only, no flush)`,
    ),
  };
}

// ------------------------------------------------------------------ 4. create_snap is O(1)

/**
 * A pool whose thin device 1 has `blocks` chunks mapped, built in metadata only
 * (allocate + insertMapping, then one commit): the data file stays sparse.
 */
async function metadataOnlyPool(dir: string, blocks: number, dataBlocks: number): Promise<{ pool: Pool; buildSeconds: number }> {
  // Build the metadata offline (as thin_restore would), then let the pool adopt it.
  fs.mkdirSync(dir, { recursive: true });
  const metaFile = path.join(dir, 'prebuilt-metadata');
  fs.writeFileSync(metaFile, '');
  fs.truncateSync(metaFile, 2 * GiB);
  const dev = new FileDevice(metaFile);
  const t0 = performance.now();
  try {
    const md = ThinMetadata.format(dev, { dataBlockSize: BLOCK_SECTORS, nrDataBlocks: dataBlocks });
    md.createThin(1);
    for (let v = 0; v < blocks; v++) {
      const b = md.allocateDataBlock();
      if (b < 0) throw new Error('create_snap bench: out of data space while building');
      md.insertMapping(1, v, b);
    }
    md.commit();
  } finally {
    dev.close();
  }
  const buildSeconds = (performance.now() - t0) / 1000;
  const pool = Pool.create(dir, { dataSize: dataBlocks * CHUNK, metadataDev: metaFile });
  if (pool.thinStatus(1).mappedSectors !== blocks * BLOCK_SECTORS) throw new Error('create_snap bench: mapping count mismatch');
  return { pool, buildSeconds };
}

async function createSnapScaling(root: string): Promise<BenchRow[]> {
  const small = 1 * GiB / CHUNK;
  const big = 64 * GiB / CHUNK;
  // Same data device size for both, so only the mapped count differs.
  const dataBlocks = big + 16384;
  const a = await metadataOnlyPool(path.join(root, 'snap-1g'), small, dataBlocks);
  const z = await metadataOnlyPool(path.join(root, 'snap-64g'), big, dataBlocks);
  const tSmall: number[] = [];
  const tBig: number[] = [];
  try {
    // Interleaved, so slow phases of the disk hit both sides alike.
    for (let i = 0; i < SNAPS; i++) {
      tSmall.push(await timed(() => a.pool.createSnap(10 + i, 1)));
      tBig.push(await timed(() => z.pool.createSnap(10 + i, 1)));
    }
    const dataFile = z.pool.status().dataFile;
    const allocated = fs.statSync(dataFile).blocks * 512;
    details.createSnap = {
      mappedSmall: small, mappedBig: big, buildSecondsSmall: sig4(a.buildSeconds), buildSecondsBig: sig4(z.buildSeconds),
      smallMs: tSmall.map((t) => sig4(t * 1000)), bigMs: tBig.map((t) => sig4(t * 1000)),
      metadataBlocksBig: z.pool.status().usedMetadataBlocks, dataFileAllocatedBytes: allocated,
    };
  } finally {
    await a.pool.close();
    await z.pool.close();
  }
  const ms = median(tSmall);
  const mb = median(tBig);
  return [row(
    'create_snap, 64 GiB mapped vs 1 GiB mapped (1,048,576 vs 16,384 mappings)',
    'snap of 64 GiB', 'snap of 1 GiB', 1 / mb, 1 / ms, sig4(1 / 1.5),
    `median of ${SNAPS}: ${sig4(mb * 1000)} vs ${sig4(ms * 1000)} ms (target: time <= 1.5x); includes commit + fsyncs`,
  )];
}

// ------------------------------------------------------------------ suite

export async function runPoolBench(): Promise<BenchRow[]> {
  const only = process.env.THINSIM_POOL_BENCH?.split(',').filter(Boolean);
  const want = (k: string): boolean => !only || only.includes(k);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-pool-bench-'));
  const rows: BenchRow[] = [];
  const t0 = performance.now();
  const step = async (name: string, fn: () => Promise<BenchRow[]>): Promise<void> => {
    const s = performance.now();
    rows.push(...(await fn()));
    console.log(`pool: ${name} done in ${((performance.now() - s) / 1000).toFixed(1)} s`);
  };
  try {
    if (want('write')) await step('sequential writes', () => seqWrite(root));
    if (want('read') || want('depth') || want('cow')) {
      let m: Mapped | undefined;
      await step('mapped fixture', async () => { m = await mappedFixture(root, 4 * SEQ_BYTES); return []; });
      try {
        if (want('read')) await step('sequential reads', () => seqRead(m!));
        // Sharing breaks before the chain: their snapshots are deleted again, so the
        // origin is shared by nothing else while they run.
        if (want('cow')) await step('sharing breaks', () => cowWrites(m!));
        if (want('depth')) await step('snapshot depth reads', () => depthReads(root, m!));
      } finally {
        await m!.pool.close();
      }
    }
    if (want('snap')) await step('create_snap scaling', () => createSnapScaling(root));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    tmpdir: os.tmpdir(),
    seconds: sig4((performance.now() - t0) / 1000),
    rows: rows.map((r) => ({ ...r, ratio: Number.isFinite(r.ratio) ? sig4(r.ratio) : null, met: r.target === undefined ? null : r.ratio >= r.target })),
    details,
  };
  fs.writeFileSync(path.join(RESULTS_DIR, 'pool.json'), JSON.stringify(out, null, 2) + '\n');
  return rows;
}

export const poolSuite: BenchSuite = { name: SUITE, run: runPoolBench };
