/**
 * thin_delta output: the differences between the mappings of two thin devices, printed exactly
 * as `thin_delta --snap1 A --snap2 B [--verbose] META` of thin-provisioning-tools 0.9.0 prints
 * them (checked against the real 0.9.0 and 1.1 tools in test/thin-xml/oracle-*.test.ts,
 * ls-delta.test.ts and kernel-fixtures.test.ts).
 *
 * Contract: pure; takes the superblock fields and two origin-sorted mapping streams (runs or
 * single mappings, any split) and writes text to `out` in ~64 KiB pieces. Memory is constant.
 *
 * Rules (from the 0.9.0 source and confirmed by experiment):
 *  1. Each side is first coalesced into runs where origin and data both advance by one.
 *     Mapping times are ignored entirely (a run may span different times).
 *  2. The two run lists are walked together by origin block. A stretch mapped only by the left
 *     device is left_only, only by the right is right_only; a stretch mapped by both is `same`
 *     when the data blocks are equal and `different` when they differ (the data block differs;
 *     content is never looked at). A stretch ends wherever either side's run ends.
 *  3. Plain output merges consecutive stretches of the same kind whose origins touch into one
 *     `<KIND begin="B" length="L"/>` line (so `different` with varying data blocks, or `same`
 *     across a run boundary, become one line). Stretches that do not touch stay separate.
 *  4. --verbose opens `<KIND>` for each maximal sequence of consecutive stretches of one kind
 *     (touching or not) and prints every stretch unmerged as
 *       <range begin="B" data_begin="D" length="L"/>                  (same, left_only, right_only)
 *       <range begin="B" left_data_begin="D1" right_data_begin="D2" length="L"/>   (different)
 *     where data_begin is the left device's block for `same`/left_only, the right's for right_only.
 *  5. Frame: `<superblock uuid="" time="T" transaction="X" data_block_size="S" nr_data_blocks="N">`
 *     (plus ` metadata_snap="M"` when the superblock holds a metadata snapshot; uuid is always
 *     printed empty), then `  <diff left="A" right="B">`, the body indented by 4 (verbose ranges
 *     by 6), `  </diff>`, `</superblock>`; every line ends with "\n". An empty diff prints just
 *     the frame. With -m the tools print the snapshot copy's superblock: nr_data_blocks="0" and no
 *     metadata_snap.
 *
 * thin_delta 1.1 (dialect '1.x') differs in three ways: --verbose also merges touching
 * stretches of one kind into one <range>, keeping the first stretch's data_begin (or
 * left/right_data_begin) so the data blocks of the later part are not described; it never prints
 * metadata_snap; and the output lacks the final newline. Plain output is otherwise identical.
 * The 0.9.0 behaviour is the default (it is the one that describes every data block).
 */

import { BufferedOutput, type OutputFn } from '../xml/writer';
import type { MappingRun, SuperblockInfo } from '../xml/types';

export interface DeltaSide {
  devId: number;
  /** Origin-sorted, non-overlapping mappings of the device. `time` is ignored. */
  mappings: Iterable<Pick<MappingRun, 'originBegin' | 'dataBegin' | 'length'>>;
}

export type DeltaDialect = '0.9' | '1.x';

export interface DeltaOptions {
  verbose?: boolean;
  /** Whose output to reproduce (default '0.9'; see the header for 1.1's differences). */
  dialect?: DeltaDialect;
  flushBytes?: number;
  /** Take the text as bytes here instead of through `out` (one reused buffer, valid during the call). */
  bytes?: (chunk: Uint8Array) => void;
}

export type Kind = 'left_only' | 'right_only' | 'different' | 'same';

interface Cursor {
  next(): boolean;
  o: number;
  d: number;
  len: number;
}

/** Pulls maximal (origin+1, data+1) runs from a mapping stream, ignoring times. */
function coalesce(src: DeltaSide['mappings']): Cursor {
  const it = src[Symbol.iterator]();
  // The run read ahead that did not join the last one (held as numbers: no object per run).
  let pending = false;
  let po = 0, pd = 0, plen = 0;
  let done = false;
  const c: Cursor = {
    o: 0,
    d: 0,
    len: 0,
    next(): boolean {
      if (done && !pending) return false;
      let o = 0, d = 0, len = 0;
      if (pending) { o = po; d = pd; len = plen; }
      pending = false;
      while (!done) {
        const r = it.next();
        if (r.done) {
          done = true;
          break;
        }
        const m = r.value;
        if (m.length <= 0) continue;
        if (len === 0) {
          o = m.originBegin; d = m.dataBegin; len = m.length;
        } else if (m.originBegin === o + len && m.dataBegin === d + len) {
          len += m.length;
        } else {
          pending = true; po = m.originBegin; pd = m.dataBegin; plen = m.length;
          break;
        }
      }
      if (len === 0) return false;
      c.o = o; c.d = d; c.len = len;
      return true;
    },
  };
  return c;
}

interface Emitter {
  range(kind: Kind, begin: number, dataLeft: number, dataRight: number, len: number): void;
  complete(): void;
}

const OPEN: Record<Kind, Buffer> = {
  left_only: Buffer.from('    <left_only begin="'),
  right_only: Buffer.from('    <right_only begin="'),
  different: Buffer.from('    <different begin="'),
  same: Buffer.from('    <same begin="'),
};
const LENGTH = Buffer.from('" length="');
const CLOSE = Buffer.from('"/>\n');

class SimpleEmitter implements Emitter {
  private kind: Kind | undefined;
  private begin = 0;
  private end = 0;
  constructor(private readonly buf: BufferedOutput) {}

  range(kind: Kind, begin: number, _dl: number, _dr: number, len: number): void {
    if (this.kind === kind && begin === this.end) {
      this.end += len;
      return;
    }
    this.emit();
    this.kind = kind;
    this.begin = begin;
    this.end = begin + len;
  }

  complete(): void {
    this.emit();
    this.kind = undefined;
  }

  private emit(): void {
    if (!this.kind) return;
    const b = this.buf;
    if (b.binary) {
      b.room(100);
      b.ascii(OPEN[this.kind]); b.num(this.begin); b.ascii(LENGTH); b.num(this.end - this.begin); b.ascii(CLOSE);
      b.mark();
      return;
    }
    b.push(`    <${this.kind} begin="${this.begin}" length="${this.end - this.begin}"/>\n`);
  }
}

class VerboseEmitter implements Emitter {
  private kind: Kind | undefined;
  constructor(private readonly buf: BufferedOutput) {}

  range(kind: Kind, begin: number, dl: number, dr: number, len: number): void {
    if (this.kind !== kind) {
      if (this.kind) this.buf.push(`    </${this.kind}>\n`);
      this.buf.push(`    <${kind}>\n`);
      this.kind = kind;
    }
    this.buf.push(
      kind === 'different'
        ? `      <range begin="${begin}" left_data_begin="${dl}" right_data_begin="${dr}" length="${len}"/>\n`
        : `      <range begin="${begin}" data_begin="${kind === 'right_only' ? dr : dl}" length="${len}"/>\n`,
    );
  }

  complete(): void {
    if (this.kind) this.buf.push(`    </${this.kind}>\n`);
    this.kind = undefined;
  }
}

/** 1.x: joins touching stretches of one kind before they reach the emitter. */
class TouchingMerger implements Emitter {
  private kind: Kind | undefined;
  private begin = 0;
  private dl = 0;
  private dr = 0;
  private len = 0;
  constructor(private readonly next: Emitter) {}

  range(kind: Kind, begin: number, dl: number, dr: number, len: number): void {
    if (this.kind === kind && begin === this.begin + this.len) {
      this.len += len;
      return;
    }
    if (this.kind) this.next.range(this.kind, this.begin, this.dl, this.dr, this.len);
    this.kind = kind;
    this.begin = begin;
    this.dl = dl;
    this.dr = dr;
    this.len = len;
  }

  complete(): void {
    if (this.kind) this.next.range(this.kind, this.begin, this.dl, this.dr, this.len);
    this.kind = undefined;
    this.next.complete();
  }
}

/** The `<superblock ...>` line thin_delta prints (note: no flags/version, unlike thin_dump). */
export function deltaSuperblockLine(sb: SuperblockInfo, dialect: DeltaDialect = '0.9'): string {
  const snap = sb.metadataSnap && dialect === '0.9' ? ` metadata_snap="${sb.metadataSnap}"` : '';
  return `<superblock uuid="" time="${sb.time}" transaction="${sb.transaction}" data_block_size="${sb.dataBlockSize}" nr_data_blocks="${sb.nrDataBlocks}"${snap}>\n`;
}

/** Write thin_delta's report for `left` (--snap1) against `right` (--snap2). */
export function writeDelta(sb: SuperblockInfo, left: DeltaSide, right: DeltaSide, out: OutputFn, opts: DeltaOptions = {}): void {
  const buf = new BufferedOutput(out, opts.flushBytes ?? 64 * 1024, opts.bytes);
  const dialect = opts.dialect ?? '0.9';
  buf.push(deltaSuperblockLine(sb, dialect));
  buf.push(`  <diff left="${left.devId}" right="${right.devId}">\n`);
  const e: Emitter = opts.verbose
    ? dialect === '1.x'
      ? new TouchingMerger(new VerboseEmitter(buf))
      : new VerboseEmitter(buf)
    : new SimpleEmitter(buf);

  walkDiff(left, right, (kind, begin, dl, dr, len) => e.range(kind, begin, dl, dr, len));
  e.complete();

  buf.push(dialect === '1.x' ? '  </diff>\n</superblock>' : '  </diff>\n</superblock>\n');
  buf.flush();
}

/** One stretch of the walk: `length` blocks from `begin` of one kind (data blocks 0 where a side is unmapped). */
export interface DiffRange {
  kind: Kind;
  begin: number;
  leftData: number;
  rightData: number;
  length: number;
}

/**
 * Walk two devices' mappings together by origin block (rules 1-2 above): every stretch
 * unmerged, in origin order (walkDiff's stretches as objects; --json lists them).
 */
export function diffRanges(left: DeltaSide, right: DeltaSide): DiffRange[] {
  const out: DiffRange[] = [];
  walkDiff(left, right, (kind, begin, leftData, rightData, length) => { out.push({ kind, begin, leftData, rightData, length }); });
  return out;
}

/** The walk behind diffRanges and writeDelta, handing each stretch to `fn` (no object per stretch). */
function walkDiff(left: DeltaSide, right: DeltaSide, fn: (kind: Kind, begin: number, leftData: number, rightData: number, length: number) => void): void {
  const l = coalesce(left.mappings);
  const r = coalesce(right.mappings);
  let lv = l.next();
  let rv = r.next();
  while (lv && rv) {
    let delta: number;
    if (l.o < r.o) {
      delta = Math.min(l.len, r.o - l.o);
      fn('left_only', l.o, l.d, 0, delta);
      consume(l, delta);
    } else if (l.o > r.o) {
      delta = Math.min(r.len, l.o - r.o);
      fn('right_only', r.o, 0, r.d, delta);
      consume(r, delta);
    } else {
      delta = Math.min(l.len, r.len);
      fn(l.d === r.d ? 'same' : 'different', l.o, l.d, r.d, delta);
      consume(l, delta);
      consume(r, delta);
    }
    if (l.len === 0) lv = l.next();
    if (r.len === 0) rv = r.next();
  }
  for (; lv; lv = l.next()) fn('left_only', l.o, l.d, 0, l.len);
  for (; rv; rv = r.next()) fn('right_only', r.o, 0, r.d, r.len);
}

function consume(c: Cursor, delta: number): void {
  c.o += delta;
  c.d += delta;
  c.len -= delta;
}

/** writeDelta into a string. */
export function formatDelta(sb: SuperblockInfo, left: DeltaSide, right: DeltaSide, opts: DeltaOptions = {}): string {
  const parts: string[] = [];
  writeDelta(sb, left, right, (c) => parts.push(c), opts);
  return parts.join('');
}
