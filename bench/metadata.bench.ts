/**
 * Metadata benchmarks: lookups, bulk insertion and metadata space, each against a baseline
 * measured in the same run (ARCHITECTURE style rule 8).
 *
 * Targets (from the metadata-performance issue):
 * 1. Lookups of mapped blocks from a warm cache: at least 1 M/s. A device with N = 1 M
 *    mappings is built and committed, then random `md.lookup(0, v)` calls are timed. Baseline:
 *    the same keys looked up in a JS Map holding the same mappings. The 1 M/s floor is absolute
 *    (the issue's number); the table shows the ratio to the Map and the floor's verdict in the note.
 * 2. Inserting N sequential mappings plus one commit: within 3x the time thin_restore takes to
 *    write the same mappings from XML. Ours: a fresh pre-sized sparse 256 MiB file, format,
 *    createThin(0), N x (allocateDataBlock + insertMapping), commit (which syncs). Theirs:
 *    `thin_restore -i xml -o file` into an identical pre-sized file, for 0.9.0 and 1.1 (the XML
 *    is written beforehand with XmlWriter and is not timed; the process start is). Two inputs:
 *      - sequential: block v -> data block v, as the allocator hands them out; one range_mapping;
 *      - scattered: block v -> data block (v * STRIDE) mod N, so no two neighbours are contiguous
 *        and the XML holds N single_mappings. Ours allocates the N data blocks first, then
 *        inserts the scattered mappings (the same N + N calls).
 *    Target: ours <= 3x their time, i.e. ratio (their time / ours) >= 1/3.
 *    Extra rows, no target: thinsim's own XML restore (restoreFile, the bulk-building path)
 *    against thin_restore on the same XML file.
 * 3. Metadata blocks in use for the same mappings: within 10 % of thin_restore. Ours:
 *    `md.spaceUsage().metadataUsed` after the commit; theirs: counted from the restored file's
 *    metadata space-map bitmaps (superblock 0xC0: nr_blocks, nr_allocated, index block), because
 *    thin_restore 0.9.0's superblock nr_allocated counts one freed scratch block too (spec §11.7
 *    item 2). Both numbers are saved. The table shows mappings per metadata block (higher is
 *    better; the "/s" the table prints does not apply), so ratio >= 1/1.1 means ours uses at
 *    most 10 % more blocks.
 *
 * Every timing is the best of ROUNDS rounds, subject and baselines interleaved within each
 * round, because the machine is shared and noisy. Ratios and verdicts use wall time (what the
 * issue asks); CPU time is recorded beside it (ours: this process, all threads; theirs: the
 * waited-for child from /proc/self/stat, 10 ms ticks) and shown in the notes, since it is far
 * less disturbed by other load on the machine. Everything is saved to
 * bench/results/metadata.json. THINSIM_BENCH_MAPPINGS overrides N for quick runs.
 *
 * The offline verbs (restore, check, dump, ls, delta) at 1M, 4M and 16M mappings against
 * thin-provisioning-tools 1.1 and 0.9.0, time and peak RSS: see offline-verbs.ts.
 * THINSIM_BENCH_OFFLINE=only runs just those, =skip leaves them out.
 *
 * Report rows, no target: `thinsim ls` and `thinsim dump` (the CLI, a process each, as the
 * tools are) against thin_ls and thin_dump on one pool with sharing (device 0: N sequential
 * mappings; a snapshot of it with every 7th block rewritten; then N/3 more scattered
 * mappings on device 0), best of ROUNDS, each output captured whole. Our output is compared
 * with thin_ls / thin_dump 0.9.0's, byte for byte, and the note says whether it matched.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileDevice } from '../src/io/file-device';
import { ThinMetadata } from '../src/thin/metadata';
import { restoreFile } from '../src/thin/restore';
import { XmlWriter } from '../src/thin/xml/writer';
import { tools09, tools1x, toolsReason, type Tools } from '../support/oracle-tools';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';
import { offlineVerbsBench } from './offline-verbs';

const SUITE = 'metadata';
const N = Number(process.env.THINSIM_BENCH_MAPPINGS ?? 1_000_000);
const ROUNDS = 3;
const METADATA_BYTES = 256 << 20;
const DATA_BLOCK_SIZE = 128;
const LOOKUP_FLOOR = 1_000_000;
/** Largest time ours may take, as a multiple of thin_restore's. */
const INSERT_TIME_FACTOR = 3;
/** Largest block count ours may use, as a multiple of thin_restore's. */
const BLOCKS_FACTOR = 1.1;
const BLOCK = 4096;
const ENTRIES_PER_BITMAP = 16320;

type Variant = 'sequential' | 'scattered';
const VARIANTS: Variant[] = ['sequential', 'scattered'];

/** Keeps results observable so no engine can drop the calls. */
let sink = 0;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** A prime stride coprime with N, so v -> v * STRIDE mod N is a permutation without runs. */
const STRIDE = ((): number => {
  let s = 7919;
  while (gcd(s, N) !== 1) s += 2;
  return s;
})();

function dataBlockOf(variant: Variant, v: number): number {
  return variant === 'sequential' ? v : (v * STRIDE) % N;
}

function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Wall and CPU seconds of one timed piece of work. */
interface Timing {
  wall: number;
  cpu: number;
}

/** Clock ticks per second of /proc/<pid>/stat times. */
const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** User + system seconds of this process's waited-for children (Linux); NaN where unknown. */
function childCpuSeconds(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[k - 3] is field k
    return (Number(f[13]) + Number(f[14])) / CLK_TCK; // cutime, cstime
  } catch {
    return NaN;
  }
}

/** Start timing; the returned function gives wall and CPU seconds since (children's CPU if asked). */
function stopwatch(children = false): () => Timing {
  const t0 = process.hrtime.bigint();
  const c0 = children ? childCpuSeconds() : 0;
  const u0 = process.cpuUsage();
  return () => {
    const wall = seconds(t0);
    if (children) return { wall, cpu: childCpuSeconds() - c0 };
    const u = process.cpuUsage(u0);
    return { wall, cpu: (u.user + u.system) / 1e6 };
  };
}

function sparseFile(file: string): void {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, '');
  fs.truncateSync(file, METADATA_BYTES);
}

/** 1000000 -> "1M", 100000 -> "100k". */
function count(n: number): string {
  return n % 1e6 === 0 ? `${n / 1e6}M` : n % 1e3 === 0 ? `${n / 1e3}k` : String(n);
}

function fmtRate(n: number): string {
  return `${(n / 1e6).toFixed(2)} M/s`;
}

// ---------------------------------------------------------------- XML (untimed)

interface XmlStats {
  file: string;
  bytes: number;
  singleMappings: number;
  rangeMappings: number;
}

function countOf(s: string, what: string): number {
  let n = 0;
  for (let i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + what.length)) n++;
  return n;
}

/** The thin_dump XML of one device holding the variant's N mappings, rendered by XmlWriter. */
function writeXml(file: string, variant: Variant): XmlStats {
  const fd = fs.openSync(file, 'w');
  const st: XmlStats = { file, bytes: 0, singleMappings: 0, rangeMappings: 0 };
  try {
    const w = new XmlWriter((chunk) => {
      st.bytes += fs.writeSync(fd, chunk);
      st.singleMappings += countOf(chunk, '<single_mapping ');
      st.rangeMappings += countOf(chunk, '<range_mapping ');
    });
    w.superblock({ uuid: '', time: 0, transaction: 0, flags: 0, version: 2, dataBlockSize: DATA_BLOCK_SIZE, nrDataBlocks: N });
    w.device({ devId: 0, mappedBlocks: N, transaction: 0, creationTime: 0, snapTime: 0 });
    for (let v = 0; v < N; v++) w.mapping(v, dataBlockOf(variant, v), 1, 0);
    w.endDevice();
    w.endSuperblock();
  } finally {
    fs.closeSync(fd);
  }
  const want = variant === 'sequential' ? { s: 0, r: 1 } : { s: N, r: 0 };
  if (st.singleMappings !== want.s || st.rangeMappings !== want.r) {
    throw new Error(`${variant} XML has ${st.singleMappings} single and ${st.rangeMappings} range mappings; expected ${want.s} and ${want.r}`);
  }
  return st;
}

// ---------------------------------------------------------------- metadata blocks in use

interface SmCount {
  /** nr_blocks of the metadata space-map root in the superblock. */
  nrBlocks: number;
  /** nr_allocated as stored in the superblock. */
  sbNrAllocated: number;
  /** Blocks with a non-zero count in the metadata space-map bitmaps (the true number in use). */
  bitmapAllocated: number;
}

function readBlock(fd: number, b: number): Buffer {
  const buf = Buffer.alloc(BLOCK);
  if (fs.readSync(fd, buf, 0, BLOCK, b * BLOCK) !== BLOCK) throw new Error(`short read of metadata block ${b}`);
  return buf;
}

function u64(buf: Buffer, off: number): number {
  return Number(buf.readBigUInt64LE(off));
}

/**
 * Read the metadata space map of `file` straight from the bytes (spec §6.2, §6.3, §6.6),
 * independently of thinsim's own space-map code.
 */
function metadataSmCount(file: string): SmCount {
  const fd = fs.openSync(file, 'r');
  try {
    const sb = readBlock(fd, 0);
    const nrBlocks = u64(sb, 0xc0);
    const sbNrAllocated = u64(sb, 0xc0 + 8);
    const index = readBlock(fd, u64(sb, 0xc0 + 16));
    let bitmapAllocated = 0;
    for (let j = 0; j * ENTRIES_PER_BITMAP < nrBlocks; j++) {
      const bm = readBlock(fd, u64(index, 16 + 16 * j));
      const entries = Math.min(ENTRIES_PER_BITMAP, nrBlocks - j * ENTRIES_PER_BITMAP);
      for (let e = 0; e < entries; e++) {
        const byte = bm[16 + (e >>> 2)];
        if ((byte >>> ((e & 3) << 1)) & 3) bitmapAllocated++;
      }
    }
    return { nrBlocks, sbNrAllocated, bitmapAllocated };
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------- the timed work

interface OursResult {
  time: Timing;
  nrAllocated: number;
  md: ThinMetadata;
}

/** Format a fresh pre-sized file and insert the variant's N mappings, then commit. */
function insertOurs(file: string, variant: Variant): OursResult {
  sparseFile(file);
  const stop = stopwatch();
  const md = ThinMetadata.format(new FileDevice(file), { dataBlockSize: DATA_BLOCK_SIZE, nrDataBlocks: N });
  md.createThin(0);
  if (variant === 'sequential') {
    for (let v = 0; v < N; v++) {
      const b = md.allocateDataBlock();
      md.insertMapping(0, v, b);
      sink += b;
    }
  } else {
    for (let v = 0; v < N; v++) sink += md.allocateDataBlock();
    for (let v = 0; v < N; v++) md.insertMapping(0, v, (v * STRIDE) % N);
  }
  md.commit();
  const time = stop();
  if (md.deviceDetails(0).mappedBlocks !== N || md.spaceUsage().dataUsed !== N) {
    throw new Error(`thinsim ${variant}: ${md.deviceDetails(0).mappedBlocks} mapped, ${md.spaceUsage().dataUsed} data blocks allocated; expected ${N}`);
  }
  return { time, nrAllocated: md.spaceUsage().metadataUsed, md };
}

function restoreTheirs(tools: Tools, xml: string, file: string): Timing {
  sparseFile(file);
  const stop = stopwatch(true);
  const r = tools.restore(xml, file, ['-q']);
  const s = stop();
  if (r.status !== 0) throw new Error(`thin_restore ${tools.version} -i ${xml} failed (${r.status}): ${r.stderr.trim()}`);
  return s;
}

async function restoreOurs(xml: string, file: string): Promise<Timing> {
  sparseFile(file);
  const stop = stopwatch();
  const r = await restoreFile(file, xml, { metadataSize: METADATA_BYTES });
  const s = stop();
  if (r.mappings !== N) throw new Error(`thinsim restore of ${xml}: ${r.mappings} mappings, expected ${N}`);
  return s;
}

// ---------------------------------------------------------------- lookups

/** N random keys in [0, N) from a fixed LCG, the same for subject and baseline. */
function randomKeys(count: number): Uint32Array {
  const keys = new Uint32Array(count);
  let s = 12345;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    keys[i] = s % N;
  }
  return keys;
}

/** Lookups per wall and per CPU second of `fn` over `keys`, repeating whole passes for at least `minSeconds`. */
function lookupRate(keys: Uint32Array, fn: (k: number) => number, minSeconds: number): Timing {
  let done = 0;
  const stop = stopwatch();
  let t: Timing;
  do {
    let x = 0;
    for (let i = 0; i < keys.length; i++) x += fn(keys[i]);
    sink += x;
    done += keys.length;
    t = stop();
  } while (t.wall < minSeconds);
  return { wall: done / t.wall, cpu: done / t.cpu };
}

interface LookupResult {
  keys: number;
  /** Lookups per wall second and per CPU second, each round. */
  thinsimRates: Timing[];
  mapRates: Timing[];
  /** Best per wall second. */
  thinsim: number;
  map: number;
  ratio: number;
  /** Best per CPU second. */
  thinsimPerCpuSecond: number;
  mapPerCpuSecond: number;
  floor: number;
  met: boolean;
}

function lookupBench(md: ThinMetadata): LookupResult {
  const keys = randomKeys(Math.min(N, 200_000));
  for (const k of keys.subarray(0, 1000)) {
    const m = md.lookup(0, k);
    if (!m || m.block !== dataBlockOf('sequential', k)) throw new Error(`lookup(0, ${k}) gave ${JSON.stringify(m)}, expected data block ${k}`);
  }
  const map = new Map<number, { block: number; time: number }>();
  for (const [v, bt] of md.mappings(0)) map.set(v, bt);
  if (map.size !== N) throw new Error(`device 0 iterates ${map.size} mappings, expected ${N}`);
  const ours = (k: number): number => md.lookup(0, k)!.block;
  const theirs = (k: number): number => map.get(k)!.block;
  // Warm the cache and the JIT on both sides.
  lookupRate(keys, ours, 0);
  lookupRate(keys, theirs, 0.1);
  const thinsimRates: Timing[] = [];
  const mapRates: Timing[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    thinsimRates.push(lookupRate(keys, ours, 0.5));
    mapRates.push(lookupRate(keys, theirs, 0.25));
  }
  const thinsim = Math.max(...thinsimRates.map((t) => t.wall));
  const mapBest = Math.max(...mapRates.map((t) => t.wall));
  return {
    keys: keys.length, thinsimRates, mapRates, thinsim, map: mapBest, ratio: thinsim / mapBest,
    thinsimPerCpuSecond: Math.max(...thinsimRates.map((t) => t.cpu)), mapPerCpuSecond: Math.max(...mapRates.map((t) => t.cpu)),
    floor: LOOKUP_FLOOR, met: thinsim >= LOOKUP_FLOOR,
  };
}

// ---------------------------------------------------------------- ls and dump (report only)

/** The pool the reader rows read: sharing between two devices, runs and single mappings. */
function sharedPool(file: string): number {
  sparseFile(file);
  const md = ThinMetadata.format(new FileDevice(file), { dataBlockSize: DATA_BLOCK_SIZE, nrDataBlocks: 2 * N });
  md.createThin(0);
  for (let v = 0; v < N; v++) md.insertMapping(0, v, md.allocateDataBlock());
  md.commit();
  md.createSnap(1, 0);
  for (let v = 0; v < N; v += 7) md.insertMapping(1, v, md.allocateDataBlock());
  md.commit();
  let mappings = 2 * N;
  for (let v = 0; v < N; v += 3, mappings++) md.insertMapping(0, N + 2 * v + 5, md.allocateDataBlock());
  md.commit();
  md.close();
  return mappings;
}

/** Time a child process run (output captured whole, as a caller would); throw if it failed. */
function timed(run: () => { status: number | null; stdout: string; stderr: string }, what: string): { time: Timing; stdout: string } {
  const stop = stopwatch(true);
  const r = run();
  const time = stop();
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr.trim()}`);
  return { time, stdout: r.stdout };
}

function readersBench(dir: string, bases: Baseline[], rows: BenchRow[]): Record<string, unknown> {
  const file = path.join(dir, 'shared-pool.bin');
  const mappings = sharedPool(file);
  const cli = path.join(__dirname, '..', '..', 'bin', 'thinsim.js');
  const out: Record<string, unknown> = { mappings };
  const t09 = bases[0].tools;
  for (const verb of ['ls', 'dump'] as const) {
    const ours: Timing[] = [];
    const theirs: Timing[][] = bases.map(() => []);
    let same: boolean | undefined;
    for (let r = 0; r < ROUNDS; r++) {
      const o = timed(() => spawnSync(process.execPath, [cli, verb, file], { encoding: 'utf8', maxBuffer: 1 << 30 }), `thinsim ${verb}`);
      ours.push(o.time);
      bases.forEach((b, i) => {
        if (!b.tools) return;
        const tools = b.tools;
        const t = timed(() => tools.run(`thin_${verb}`, [file]), `thin_${verb} ${tools.version}`);
        theirs[i].push(t.time);
        if (r === 0 && tools === t09) same = t.stdout === o.stdout;
      });
    }
    const best0 = best(ours);
    out[verb] = { thinsim: ours, baselines: bases.map((b, i) => ({ baseline: b.label, rounds: theirs[i] })), sameAs09: same };
    bases.forEach((b, i) => {
      const tb = best(theirs[i]);
      rows.push({
        suite: SUITE,
        case: `${verb} of a pool with ${count(mappings)} mappings and a snapshot`,
        subject: `thinsim ${verb} (CLI)`,
        baseline: b.label.replace('thin_restore', `thin_${verb}`),
        subjectOps: mappings / best0.wall,
        baselineOps: mappings / tb.wall,
        ratio: tb.wall / best0.wall,
        note: b.tools
          ? `${fmtPair(best0, tb)}; process start included; output ${same === undefined ? 'not compared' : same ? 'byte-identical to 0.9.0' : 'DIFFERS from 0.9.0'}`
          : `not run: ${b.skip}`,
      });
    });
  }
  fs.rmSync(file, { force: true });
  return out;
}

// ---------------------------------------------------------------- the suite

interface Baseline {
  label: string;
  version: string;
  tools: Tools | undefined;
  skip: string;
}

function baselines(): Baseline[] {
  const t09 = tools09();
  const t1 = tools1x();
  return [
    { label: `thin_restore ${t09?.version ?? '0.9'}`, version: t09?.version ?? '', tools: t09, skip: t09 ? '' : toolsReason.tools09 },
    { label: `thin_restore ${t1?.version ?? '1.x'}`, version: t1?.version ?? '', tools: t1, skip: t1 ? '' : toolsReason.tools1x },
  ];
}

/** Fastest wall time and fastest CPU time over the rounds. */
function best(ts: Timing[]): Timing {
  return ts.length ? { wall: Math.min(...ts.map((t) => t.wall)), cpu: Math.min(...ts.map((t) => t.cpu)) } : { wall: NaN, cpu: NaN };
}

function fmtPair(ours: Timing, theirs: Timing): string {
  const cpuRatio = theirs.cpu > 0 ? `${(ours.cpu / theirs.cpu).toFixed(2)}x` : 'theirs under one clock tick';
  return `wall ${ours.wall.toFixed(2)} s vs ${theirs.wall.toFixed(2)} s; cpu ${ours.cpu.toFixed(2)} s vs ${theirs.cpu.toFixed(2)} s = ${cpuRatio}`;
}

export async function runMetadataBench(): Promise<BenchRow[]> {
  const offline = process.env.THINSIM_BENCH_OFFLINE ?? 'with';
  if (offline === 'only') {
    const { rows, raw } = offlineVerbsBench(SUITE);
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    fs.writeFileSync(path.join(RESULTS_DIR, 'metadata-offline.json'), JSON.stringify({ raw, rows }, null, 2) + '\n');
    return rows;
  }
  const started = process.hrtime.bigint();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-bench-md-'));
  const bases = baselines();
  for (const b of bases) if (!b.tools) console.log(`metadata: ${b.label} not run: ${b.skip}`);
  const check = tools1x() ?? tools09();
  const rows: BenchRow[] = [];
  const json: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    loadavg: os.loadavg(),
    mappings: N,
    rounds: ROUNDS,
    stride: STRIDE,
    metadataBytes: METADATA_BYTES,
    dataBlockSize: DATA_BLOCK_SIZE,
    baselines: bases.map((b) => ({ label: b.label, version: b.version, skipped: b.skip || undefined })),
  };
  try {
    // Untimed: the XML inputs.
    const xml: Record<Variant, XmlStats> = {} as Record<Variant, XmlStats>;
    for (const v of VARIANTS) xml[v] = writeXml(path.join(dir, `${v}.xml`), v);
    json.xml = Object.fromEntries(VARIANTS.map((v) => [v, { bytes: xml[v].bytes, singleMappings: xml[v].singleMappings, rangeMappings: xml[v].rangeMappings }]));

    const times: Record<Variant, { thinsim: Timing[]; thinsimRestore: Timing[]; theirs: Timing[][] }> = {
      sequential: { thinsim: [], thinsimRestore: [], theirs: bases.map(() => []) },
      scattered: { thinsim: [], thinsimRestore: [], theirs: bases.map(() => []) },
    };
    const blocks: Record<Variant, { thinsim: number; thinsimFile?: SmCount; thinCheck?: string; theirs: (SmCount | undefined)[] }> = {
      sequential: { thinsim: NaN, theirs: bases.map(() => undefined) },
      scattered: { thinsim: NaN, theirs: bases.map(() => undefined) },
    };
    let lookupMd: ThinMetadata | undefined;
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of VARIANTS) {
        const ours = path.join(dir, `thinsim-${v}.bin`);
        const res = insertOurs(ours, v);
        times[v].thinsim.push(res.time);
        console.log(`metadata: round ${r + 1} ${v}: thinsim insert+commit ${res.time.wall.toFixed(3)} s (cpu ${res.time.cpu.toFixed(3)} s)`);
        if (r === 0) {
          blocks[v].thinsim = res.nrAllocated;
          blocks[v].thinsimFile = metadataSmCount(ours);
          if (check) {
            const c = check.check(ours);
            blocks[v].thinCheck = `thin_check ${check.version}: exit ${c.status}${c.status === 0 ? '' : ` ${c.stderr.trim()}`}`;
          }
        }
        // The last sequential pool stays open for the lookups; unlinking its file is fine on
        // Linux (the open descriptor keeps it) and the lookups are served from the cache.
        if (v === 'sequential' && r === ROUNDS - 1) lookupMd = res.md;
        else res.md.close();
        fs.rmSync(ours, { force: true });

        const ownRestore = path.join(dir, `thinsim-restore-${v}.bin`);
        times[v].thinsimRestore.push(await restoreOurs(xml[v].file, ownRestore));
        fs.rmSync(ownRestore, { force: true });

        bases.forEach((b, i) => {
          if (!b.tools) return;
          const out = path.join(dir, `theirs-${i}-${v}.bin`);
          const s = restoreTheirs(b.tools, xml[v].file, out);
          times[v].theirs[i].push(s);
          console.log(`metadata: round ${r + 1} ${v}: ${b.label} ${s.wall.toFixed(3)} s (cpu ${s.cpu.toFixed(3)} s)`);
          if (r === 0) blocks[v].theirs[i] = metadataSmCount(out);
          fs.rmSync(out, { force: true });
        });
      }
    }

    // 1. Lookups.
    const lk = lookupBench(lookupMd!);
    lookupMd!.close();
    json.lookup = lk;
    rows.push({
      suite: SUITE,
      case: `lookup, ${count(N)} mappings, warm cache, random keys`,
      subject: 'thinsim md.lookup',
      baseline: 'JS Map.get',
      subjectOps: lk.thinsim,
      baselineOps: lk.map,
      ratio: lk.ratio,
      note: `floor 1 M/s: ${lk.met ? 'met' : 'MISSED'} (${fmtRate(lk.thinsim)}; per cpu-second ${fmtRate(lk.thinsimPerCpuSecond)} vs Map ${fmtRate(lk.mapPerCpuSecond)})`,
    });

    // 2. Insertion time and 3. metadata blocks.
    const insert: Record<string, unknown> = {};
    const space: Record<string, unknown> = {};
    for (const v of VARIANTS) {
      const what = v === 'sequential' ? `${count(N)} sequential mappings (XML: 1 range)` : `${count(N)} scattered mappings (XML: ${count(N)} single)`;
      const ours = best(times[v].thinsim);
      const ownRestore = best(times[v].thinsimRestore);
      const vs = bases.map((b, i) => {
        const theirs = best(times[v].theirs[i]);
        return {
          baseline: b.label, rounds: times[v].theirs[i], best: theirs,
          oursOverTheirs: ours.wall / theirs.wall, oursOverTheirsCpu: ours.cpu / theirs.cpu, met: ours.wall <= INSERT_TIME_FACTOR * theirs.wall,
          thinsimRestoreOverTheirs: ownRestore.wall / theirs.wall, thinsimRestoreOverTheirsCpu: ownRestore.cpu / theirs.cpu,
        };
      });
      insert[v] = { thinsim: { rounds: times[v].thinsim, best: ours }, thinsimRestore: { rounds: times[v].thinsimRestore, best: ownRestore }, baselines: vs };
      bases.forEach((b, i) => {
        const x = vs[i];
        rows.push({
          suite: SUITE,
          case: `insert ${what} + commit`,
          subject: 'thinsim insertMapping',
          baseline: b.label,
          subjectOps: N / ours.wall,
          baselineOps: N / x.best.wall,
          ratio: x.best.wall / ours.wall,
          target: Number((1 / INSERT_TIME_FACTOR).toFixed(3)),
          note: b.tools ? `${x.oursOverTheirs.toFixed(2)}x their time (<= ${INSERT_TIME_FACTOR}x ${x.met ? 'met' : 'MISSED'}); ${fmtPair(ours, x.best)}` : `not run: ${b.skip}`,
        });
      });
      bases.forEach((b, i) => {
        const x = vs[i];
        rows.push({
          suite: SUITE,
          case: `restore XML of ${what}`,
          subject: 'thinsim restoreFile',
          baseline: b.label,
          subjectOps: N / ownRestore.wall,
          baselineOps: N / x.best.wall,
          ratio: x.best.wall / ownRestore.wall,
          note: b.tools ? fmtPair(ownRestore, x.best) : `not run: ${b.skip}`,
        });
      });

      const bl = blocks[v];
      const spaceVs = bases.map((b, i) => {
        const t = bl.theirs[i];
        return t && { baseline: b.label, ...t, oursOverTheirs: bl.thinsim / t.bitmapAllocated, met: bl.thinsim <= BLOCKS_FACTOR * t.bitmapAllocated };
      });
      space[v] = { thinsim: { nrAllocated: bl.thinsim, file: bl.thinsimFile, thinCheck: bl.thinCheck }, baselines: spaceVs };
      if (bl.thinsimFile && bl.thinsimFile.bitmapAllocated !== bl.thinsim) {
        console.log(`metadata: WARNING ${v}: md.spaceUsage().metadataUsed ${bl.thinsim} but the file's bitmaps hold ${bl.thinsimFile.bitmapAllocated}`);
      }
      bases.forEach((b, i) => {
        const t = bl.theirs[i];
        const x = spaceVs[i];
        const quirk = t && t.sbNrAllocated !== t.bitmapAllocated ? `, superblock says ${t.sbNrAllocated}` : '';
        rows.push({
          suite: SUITE,
          case: `metadata blocks, ${what} [mappings/block]`,
          subject: 'thinsim',
          baseline: b.label,
          subjectOps: N / bl.thinsim,
          baselineOps: t ? N / t.bitmapAllocated : NaN,
          ratio: t ? t.bitmapAllocated / bl.thinsim : NaN,
          target: Number((1 / BLOCKS_FACTOR).toFixed(3)),
          note: t && x
            ? `blocks: ours ${bl.thinsim}, theirs ${t.bitmapAllocated}${quirk} (<= +10 % ${x.met ? 'met' : 'MISSED'})${bl.thinCheck && bl.thinCheck.includes('exit 0') ? '' : `; ours: ${bl.thinCheck ?? 'not checked'}`}`
            : `not run: ${b.skip}`,
        });
      });
    }
    json.insert = insert;
    json.metadataBlocks = space;
    json.readers = readersBench(dir, bases, rows);
    if (offline !== 'skip') {
      const o = offlineVerbsBench(SUITE);
      rows.push(...o.rows);
      json.offline = o.raw;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  json.suiteSeconds = seconds(started);
  json.rows = rows.map((r) => ({ ...r, ratio: Number.isFinite(r.ratio) ? Number(r.ratio.toFixed(4)) : null }));
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'metadata.json'), JSON.stringify(json, null, 2) + '\n');
  console.log(`metadata: suite took ${(json.suiteSeconds as number).toFixed(1)} s; results in bench/results/metadata.json`);
  if (sink === 0.5) console.log(sink); // never true; keeps `sink` live
  return rows;
}

export const metadataSuite: BenchSuite = { name: SUITE, run: runMetadataBench };
