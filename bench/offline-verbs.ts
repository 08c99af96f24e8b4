/**
 * The offline verbs against thin-provisioning-tools 1.1 (and 0.9.0), at 1M, 4M and 16M
 * mappings (issue 19): restore, check, dump, ls and delta, each a fresh process as a user
 * runs it, timed (wall and CPU) and measured for peak RSS with GNU time, in one run. Part of
 * the metadata suite (metadata.bench.ts calls it).
 *
 * Rows (ratios, never bare times):
 *  - time: 1.1's wall time / ours (target >= 1/1.5: ours at most 1.5x theirs), best of the
 *    rounds, subject and baselines interleaved; CPU seconds in the note (less disturbed by
 *    other load on a shared machine);
 *  - memory: their peak RSS / ours, with our MB against the issue's bound (100 MB; 150 MB
 *    for restore) in the note and as the verdict;
 *  - flatness: our peak RSS at the largest size against the 4M one (target: at most 1.2x).
 * Outputs: at the smallest size our dump, ls and delta are compared byte for byte with
 * 0.9.0's, and our restore's result is checked with thin_check 1.1 (both noted).
 *
 * Inputs: a pool of 4 devices sharing data blocks (device 0 maps N/4 blocks in shuffled runs
 * of 1..8; device k keeps each of them with probability 1 - 0.15k, else maps a new block),
 * written as thin_dump XML and restored with thin_restore 1.1; both cached under
 * os.tmpdir()/thinsim-bench-offline (generation is never timed).
 * Knobs: THINSIM_BENCH_OFFLINE_SIZES (default "1M,4M,16M"; e.g. "1M" for a quick run),
 * THINSIM_BENCH_OFFLINE_ROUNDS (default 2 below 16M, 1 from 16M), THINSIM_BENCH_OFFLINE_VERBS
 * (default all; e.g. "restore" for the restore rows alone). Needs /usr/bin/time.
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rand } from '../support/random';
import { pdataTools, tools09, tools1x, toolsReason } from '../support/oracle-tools';
import type { BenchRow } from './bench-suite';

const GNU_TIME = '/usr/bin/time';
const CACHE = path.join(os.tmpdir(), 'thinsim-bench-offline');
const GENERATOR_VERSION = 1;
const METADATA_BYTES = 2 * 2 ** 30; // Docker's default metadata device
const RSS_BOUND: Record<Verb, number> = { restore: 150, check: 100, dump: 100, ls: 100, delta: 100 };
const TIME_TARGET = Number((1 / 1.5).toFixed(3));
const FLAT_TARGET = Number((1 / 1.2).toFixed(3));

type Verb = 'restore' | 'check' | 'dump' | 'ls' | 'delta';
const VERBS: Verb[] = ['restore', 'check', 'dump', 'ls', 'delta'];
const LS_FIELDS = 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS';

interface Run { wall: number; cpu: number; rssMB: number }

function parseSizes(): number[] {
  const spec = process.env.THINSIM_BENCH_OFFLINE_SIZES ?? '1M,4M,16M';
  return spec.split(',').map((s) => {
    const m = /^(\d+)([KM]?)$/i.exec(s.trim());
    if (!m) throw new Error(`THINSIM_BENCH_OFFLINE_SIZES: "${s}" is not a count like 4M or 250K`);
    return Number(m[1]) * (m[2].toUpperCase() === 'M' ? 1e6 : m[2].toUpperCase() === 'K' ? 1e3 : 1);
  });
}

function parseVerbs(): Verb[] {
  const spec = process.env.THINSIM_BENCH_OFFLINE_VERBS;
  if (spec === undefined || spec.trim() === '') return VERBS;
  return spec.split(',').map((s) => {
    const v = s.trim() as Verb;
    if (!VERBS.includes(v)) throw new Error(`THINSIM_BENCH_OFFLINE_VERBS: "${s}" is not one of ${VERBS.join(', ')}`);
    return v;
  });
}

function label(n: number): string {
  return n >= 1e6 ? `${n / 1e6}M` : `${n / 1e3}K`;
}

/** Write the pool's XML (see the header) to `file`, streaming. */
function writeXml(file: string, total: number): void {
  const per = Math.floor(total / 4);
  const rng = new Rand(19);
  const fd = fs.openSync(file + '.tmp', 'w');
  let buf: string[] = [];
  const flush = (): void => { fs.writeSync(fd, buf.join('')); buf = []; };
  const nrData = per * 3;
  buf.push(`<superblock uuid="" time="3" transaction="7" flags="0" version="2" data_block_size="128" nr_data_blocks="${nrData}">\n`);
  const runs: Array<[number, number]> = [];
  for (let v = 0; v < per;) { const len = Math.min(per - v, 1 + rng.int(8)); runs.push([v, len]); v += len; }
  for (let i = runs.length - 1; i > 0; i--) { const j = rng.int(i + 1); [runs[i], runs[j]] = [runs[j], runs[i]]; }
  const base = new Float64Array(per);
  let d = 0;
  for (const [v, len] of runs) for (let i = 0; i < len; i++) base[v + i] = d++;
  let next = per;
  for (let dev = 0; dev < 4; dev++) {
    const m = base.slice();
    const t = new Uint32Array(per);
    if (dev > 0) for (let v = 0; v < per; v++) if (rng.chance(0.15 * dev)) { m[v] = next++ % nrData; t[v] = dev; }
    buf.push(`  <device dev_id="${dev}" mapped_blocks="${per}" transaction="0" creation_time="${dev}" snap_time="${dev}">\n`);
    for (let o = 0; o < per;) {
      let len = 1;
      while (o + len < per && m[o + len] === m[o] + len && t[o + len] === t[o]) len++;
      buf.push(len === 1
        ? `    <single_mapping origin_block="${o}" data_block="${m[o]}" time="${t[o]}"/>\n`
        : `    <range_mapping origin_begin="${o}" data_begin="${m[o]}" length="${len}" time="${t[o]}"/>\n`);
      o += len;
      if (buf.length >= 8192) flush();
    }
    buf.push('  </device>\n');
  }
  buf.push('</superblock>\n');
  flush();
  fs.closeSync(fd);
  fs.renameSync(file + '.tmp', file);
}

function freshFile(file: string): void {
  fs.rmSync(file, { force: true });
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, METADATA_BYTES);
  fs.closeSync(fd);
}

/** The cached XML and metadata (restored by thin_restore 1.1) for `n` mappings. */
export function inputs(n: number): { xml: string; meta: string } {
  fs.mkdirSync(CACHE, { recursive: true });
  const xml = path.join(CACHE, `pool-${label(n)}-v${GENERATOR_VERSION}.xml`);
  const meta = path.join(CACHE, `pool-${label(n)}-v${GENERATOR_VERSION}.meta`);
  if (!fs.existsSync(xml)) { console.log(`offline: generating ${xml}`); writeXml(xml, n); }
  if (!fs.existsSync(meta)) {
    freshFile(meta + '.tmp');
    const r = spawnSync(pdataTools(), ['thin_restore', '-i', xml, '-o', meta + '.tmp'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`thin_restore 1.1 of ${xml} failed: ${r.stderr}`);
    fs.renameSync(meta + '.tmp', meta);
  }
  return { xml, meta };
}

/** Run argv under GNU time with stdout to `out` (a file, or /dev/null); wall, CPU, peak RSS. */
function measure(argv: string[], out = '/dev/null'): Run {
  const fd = fs.openSync(out, 'w');
  try {
    const r = spawnSync(GNU_TIME, ['-f', '@@ %e %U %S %M', ...argv], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8', maxBuffer: 1 << 26 });
    const m = /@@ ([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(r.stderr ?? '');
    if (!m) throw new Error(`${argv.join(' ')}: no timing (${r.error ?? r.stderr?.slice(-300)})`);
    // check exits 1 only for damage, which these pools do not have.
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`);
    return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rssMB: Number(m[4]) / 1024 };
  } finally {
    fs.closeSync(fd);
  }
}

function argvOf(who: 'ours' | '1.1' | '0.9', verb: Verb, xml: string, meta: string, target: string): string[] {
  const cli = path.join(__dirname, '..', '..', 'bin', 'thinsim.js');
  if (who === 'ours') {
    switch (verb) {
      case 'restore': return [process.execPath, cli, 'restore', target, '-i', xml, '-q'];
      case 'check': return [process.execPath, cli, 'check', meta, '-q'];
      case 'dump': return [process.execPath, cli, 'dump', meta];
      case 'ls': return [process.execPath, cli, 'ls', meta, '-o', LS_FIELDS];
      case 'delta': return [process.execPath, cli, 'delta', meta, '--snap1', '0', '--snap2', '3'];
    }
  }
  const tool = (name: string): string[] => who === '1.1' ? [pdataTools(), name] : [path.join(process.env.THINSIM_TPT09_DIR ?? '/usr/sbin', name)];
  switch (verb) {
    case 'restore': return [...tool('thin_restore'), '-i', xml, '-o', target];
    case 'check': return [...tool('thin_check'), '-q', meta];
    case 'dump': return [...tool('thin_dump'), meta];
    case 'ls': return [...tool('thin_ls'), '-o', LS_FIELDS, meta];
    case 'delta': return [...tool('thin_delta'), '--snap1', '0', '--snap2', '3', meta];
  }
}

function sameFiles(a: string, b: string): boolean {
  const h = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  return h(a) === h(b);
}

function bestOf(rs: Run[]): Run {
  return { wall: Math.min(...rs.map((r) => r.wall)), cpu: Math.min(...rs.map((r) => r.cpu)), rssMB: Math.max(...rs.map((r) => r.rssMB)) };
}

/** The rows (see the header) and the raw runs, for bench/results/metadata.json. */
export function offlineVerbsBench(suite: string): { rows: BenchRow[]; raw: unknown } {
  const rows: BenchRow[] = [];
  const t1 = tools1x();
  if (!t1) return { rows, raw: { skipped: toolsReason.tools1x } };
  if (!fs.existsSync(GNU_TIME)) return { rows, raw: { skipped: `${GNU_TIME} is missing (apt-get install time)` } };
  const with09 = tools09() !== undefined;
  const sizes = parseSizes();
  const verbs = parseVerbs();
  const raw: Record<string, unknown> = { date: new Date().toISOString(), loadavg: os.loadavg(), sizes, verbs };
  const ourRss = new Map<number, Map<Verb, number>>();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-bench-offline-run-'));
  try {
    for (const n of sizes) {
      const { xml, meta } = inputs(n);
      const rounds = Number(process.env.THINSIM_BENCH_OFFLINE_ROUNDS ?? (n >= 16e6 ? 1 : 2));
      const who: Array<'ours' | '1.1' | '0.9'> = with09 ? ['ours', '1.1', '0.9'] : ['ours', '1.1'];
      const runs = new Map<string, Run[]>();
      const notes: string[] = [];
      for (let r = 0; r < rounds; r++) {
        for (const verb of verbs) {
          for (const w of who) {
            const target = path.join(work, `restored-${w}`);
            if (verb === 'restore') freshFile(target);
            const out = r === 0 && n === sizes[0] && verb !== 'restore' && verb !== 'check' ? path.join(work, `${verb}-${w}.out`) : '/dev/null';
            const run = measure(argvOf(w, verb, xml, meta, target), out);
            const k = `${verb}/${w}`;
            runs.set(k, [...(runs.get(k) ?? []), run]);
            if (verb === 'restore' && w === 'ours' && r === 0) {
              const c = spawnSync(pdataTools(), ['thin_check', target], { encoding: 'utf8' });
              notes.push(`restore ${label(n)}: thin_check 1.1 ${c.status === 0 ? 'accepts' : `REJECTS (${c.stderr.slice(0, 200)})`} ours`);
            }
            if (verb === 'restore') fs.rmSync(target, { force: true });
          }
          if (r === 0 && n === sizes[0] && with09 && verb !== 'restore' && verb !== 'check') {
            notes.push(`${verb} ${label(n)}: ours ${sameFiles(path.join(work, `${verb}-ours.out`), path.join(work, `${verb}-0.9.out`)) ? 'byte-identical to' : 'DIFFERS from'} 0.9.0`);
          }
        }
      }
      raw[label(n)] = Object.fromEntries(runs);
      raw[`${label(n)} notes`] = notes;
      for (const note of notes) console.log(`offline: ${note}`);
      const rss = new Map<Verb, number>();
      for (const verb of verbs) {
        const ours = bestOf(runs.get(`${verb}/ours`)!);
        rss.set(verb, ours.rssMB);
        for (const w of who.slice(1)) {
          const theirs = bestOf(runs.get(`${verb}/${w}`)!);
          rows.push({
            suite, case: `${verb}, ${label(n)} mappings (time)`, subject: `thinsim ${verb}`, baseline: `thin_${verb} ${w}`,
            subjectOps: 1 / ours.wall, baselineOps: 1 / theirs.wall, ratio: theirs.wall / ours.wall,
            target: w === '1.1' ? TIME_TARGET : undefined,
            note: `wall ${ours.wall.toFixed(2)} s vs ${theirs.wall.toFixed(2)} s; cpu ${ours.cpu.toFixed(2)} s vs ${theirs.cpu.toFixed(2)} s (cpu ratio ${(theirs.cpu / ours.cpu).toFixed(2)}); best of ${rounds}`,
          });
          if (w !== '1.1') continue;
          rows.push({
            suite, case: `${verb}, ${label(n)} mappings (peak RSS)`, subject: `thinsim ${verb}`, baseline: `thin_${verb} ${w}`,
            subjectOps: 1 / ours.rssMB, baselineOps: 1 / theirs.rssMB, ratio: theirs.rssMB / ours.rssMB,
            note: `${ours.rssMB.toFixed(0)} MB vs ${theirs.rssMB.toFixed(0)} MB; bound ${RSS_BOUND[verb]} MB: ${ours.rssMB <= RSS_BOUND[verb] ? 'ok' : 'MISSED'}`,
          });
        }
      }
      ourRss.set(n, rss);
    }
    const base = sizes.includes(4e6) ? 4e6 : sizes[0];
    const top = Math.max(...sizes);
    if (top !== base) {
      for (const verb of verbs) {
        const a = ourRss.get(base)!.get(verb)!;
        const b = ourRss.get(top)!.get(verb)!;
        rows.push({
          suite, case: `${verb} peak RSS, ${label(top)} against ${label(base)} mappings`, subject: `thinsim ${verb} ${label(top)}`, baseline: `thinsim ${verb} ${label(base)}`,
          subjectOps: 1 / b, baselineOps: 1 / a, ratio: a / b, target: FLAT_TARGET,
          note: `${b.toFixed(0)} MB vs ${a.toFixed(0)} MB`,
        });
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return { rows, raw };
}
