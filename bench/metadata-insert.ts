/**
 * Metadata suite, targets 2 and 3, from one set of rounds:
 * 2. Inserting N mappings plus one commit: within 3x the time thin_restore (0.9.0 and 1.x)
 *    takes to write the same mappings from XML into an identical pre-sized file (the XML is
 *    written beforehand with XmlWriter and is not timed; the tool's process start is). Inputs
 *    `sequential` (one range_mapping) and `scattered` (N single_mappings). Extra rows, no
 *    target: thinsim's own XML restore (restoreFile) against thin_restore on the same XML.
 * 3. Metadata blocks in use for the same mappings: within 10 % of thin_restore's, theirs
 *    counted from the restored file's space-map bitmaps read straight from the bytes (not
 *    the superblock's nr_allocated, which 0.9.0 overcounts by one scratch block).
 * Subject and baselines are interleaved within each round; best of ROUNDS. Part of
 * metadata.bench.ts, which describes the method in full.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileDevice } from '../src/io/file-device';
import { ThinMetadata } from '../src/thin/metadata';
import { restoreFile } from '../src/thin/restore';
import { XmlWriter } from '../src/thin/xml/writer';
import type { Tools } from '../support/oracle-tools';
import type { BenchRow } from './bench-suite';
import {
  DATA_BLOCK_SIZE, METADATA_BYTES, N, ROUNDS, STRIDE, SUITE, VARIANTS,
  best, count, dataBlockOf, fmtPair, keep, sparseFile, stopwatch, type Baseline, type Timing, type Variant,
} from './metadata-common';

/** Largest time ours may take, as a multiple of thin_restore's. */
const INSERT_TIME_FACTOR = 3;
/** Largest block count ours may use, as a multiple of thin_restore's. */
const BLOCKS_FACTOR = 1.1;
const BLOCK = 4096;
const ENTRIES_PER_BITMAP = 16320;

// ---------------------------------------------------------------- XML (untimed)

export interface XmlStats {
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
export function writeXml(file: string, variant: Variant): XmlStats {
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

export interface SmCount {
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
      keep.sink += b;
    }
  } else {
    for (let v = 0; v < N; v++) keep.sink += md.allocateDataBlock();
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

// ---------------------------------------------------------------- the rounds

export interface VariantTimes { thinsim: Timing[]; thinsimRestore: Timing[]; theirs: Timing[][] }
export interface VariantBlocks { thinsim: number; thinsimFile?: SmCount; thinCheck?: string; theirs: (SmCount | undefined)[] }
export interface Rounds {
  times: Record<Variant, VariantTimes>;
  blocks: Record<Variant, VariantBlocks>;
  /** The last round's sequential pool, still open, for the lookups (the caller closes it). */
  lookupMd: ThinMetadata;
}

/**
 * ROUNDS rounds of: per variant, our insert + commit, our restoreFile, then each baseline's
 * thin_restore, all on the same XML; block counts (and our file's thin_check) from round 1.
 */
export async function insertRounds(dir: string, xml: Record<Variant, XmlStats>, bases: Baseline[], check: Tools | undefined): Promise<Rounds> {
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
  return { times, blocks, lookupMd: lookupMd! };
}

// ---------------------------------------------------------------- the rows

/** The insert, restore and metadata-block rows; returns the raw figures for metadata.json. */
export function insertAndBlockRows(rounds: Rounds, bases: Baseline[], rows: BenchRow[]): { insert: Record<string, unknown>; space: Record<string, unknown> } {
  const { times, blocks } = rounds;
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
  return { insert, space };
}
