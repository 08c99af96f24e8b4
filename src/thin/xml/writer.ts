/**
 * Dump writers: MetadataSink implementations that print a metadata stream the way
 * thin_dump 0.9.0 does (XML and `-f human_readable`), plus a JSON form of the same content.
 *
 * Contract: output goes to `out(chunk)` in pieces of about `flushBytes` (64 KiB) characters and
 * once more at endSuperblock (or on flush()), so a dump of any size streams in constant memory.
 * With the `bytes` option the same text goes to `bytes(chunk)` instead, UTF-8 encoded into one
 * reused buffer (valid only during the call): no string per line, for the CLI.
 * Mapping calls may split runs arbitrarily; consecutive mappings whose origin and data blocks
 * both advance by one and whose times are equal are merged into one run, across calls, exactly
 * as thin_dump merges leaf entries. A run of one block prints as single_mapping, longer runs as
 * range_mapping. Writers trust their input (readers validate) but refuse mappings that go
 * backwards, since the merged output would silently be wrong.
 *
 * thin_dump 0.9.0 XML, verified byte for byte against the real tool (test/thin-xml):
 *   <superblock uuid="" time="T" transaction="X" flags="F" version="V" data_block_size="S" nr_data_blocks="N">
 *     <device dev_id="D" mapped_blocks="M" transaction="X" creation_time="C" snap_time="S">
 *       <range_mapping origin_begin="O" data_begin="B" length="L" time="T"/>
 *       <single_mapping origin_block="O" data_block="B" time="T"/>
 *     </device>
 *   </superblock>
 * No XML declaration, two spaces per level, "\n" after every line including the last.
 * 0.9.0 prints uuid="" whatever the superblock holds: pass uuid "" to match it.
 * `metadata_snap` is never printed: thin_dump 0.9.0 and 1.1 omit it both for a superblock that
 * holds a metadata snapshot and for `-m` dumps. A `-m` dump prints the snapshot copy's fields,
 * whose data space-map root is zeroed, hence nr_data_blocks="0".
 * thin_dump 1.1 differs: it omits flags when 0, always prints version="2", emits <def>/<ref>
 * for shared leaves, and ends without a final newline.
 */

import { ThinError } from '../../errors';
import type { DeviceInfo, MetadataSink, SuperblockInfo } from './types';

export type OutputFn = (chunk: string) => void;

export interface WriterOptions {
  /** Flush threshold in characters (default 64 KiB). */
  flushBytes?: number;
  /** Take the output as bytes here instead of as strings through `out` (see the contract). */
  bytes?: (chunk: Uint8Array) => void;
}

const DEFAULT_FLUSH = 64 * 1024;

/** Escape an attribute value (only uuid can hold arbitrary text). */
export function escapeAttr(s: string): string {
  return s.replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}

/**
 * Collects output text and hands it on in large pieces: strings to `out`, or, given
 * `bytes`, UTF-8 in one reused buffer (then `ascii` and `num` add text without making
 * a string).
 */
export class BufferedOutput {
  private parts: string[] = [];
  private size = 0;
  private readonly bin: Buffer | undefined;
  private pos = 0;
  constructor(private readonly out: OutputFn, private readonly flushBytes = DEFAULT_FLUSH, private readonly bytes?: (chunk: Uint8Array) => void) {
    if (bytes) this.bin = Buffer.allocUnsafe(flushBytes + 4096);
  }

  /** Whether `ascii`/`num` write bytes (else callers push strings). */
  get binary(): boolean {
    return this.bin !== undefined;
  }

  push(s: string): void {
    const bin = this.bin;
    if (bin !== undefined) {
      if (this.pos + s.length * 3 > bin.length) this.flush();
      if (s.length * 3 > bin.length) { this.bytes!(Buffer.from(s)); return; }
      this.pos += bin.write(s, this.pos);
      if (this.pos >= this.flushBytes) this.flush();
      return;
    }
    this.parts.push(s);
    this.size += s.length;
    if (this.size >= this.flushBytes) this.flush();
  }

  /** Bytes of pure ASCII text (binary mode only); call `room` first. */
  ascii(lit: Uint8Array): void {
    this.bin!.set(lit, this.pos);
    this.pos += lit.length;
  }

  /** A whole number >= 0 in decimal (binary mode only); call `room` first. */
  num(n: number): void {
    const bin = this.bin!;
    if (n < 10) { bin[this.pos++] = 48 + n; return; }
    let digits = 0;
    for (let x = n; x >= 1; x = Math.floor(x / 10)) digits++;
    let at = this.pos + digits;
    this.pos = at;
    for (let x = n; at > this.pos - digits; x = Math.floor(x / 10)) bin[--at] = 48 + (x % 10);
  }

  /** Make room for `n` more bytes (binary mode), flushing if needed. */
  room(n: number): void {
    if (this.pos + n > this.bin!.length) this.flush();
  }

  /** End of a piece (binary mode): hand it on once it is large. */
  mark(): void {
    if (this.pos >= this.flushBytes) this.flush();
  }

  flush(): void {
    if (this.bin !== undefined) {
      if (this.pos === 0) return;
      const n = this.pos;
      this.pos = 0;
      this.bytes!(this.bin.subarray(0, n));
      return;
    }
    if (this.size === 0) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.size = 0;
    this.out(chunk);
  }
}

const SINGLE_0 = Buffer.from('    <single_mapping origin_block="');
const SINGLE_1 = Buffer.from('" data_block="');
const RANGE_0 = Buffer.from('    <range_mapping origin_begin="');
const RANGE_1 = Buffer.from('" data_begin="');
const RANGE_2 = Buffer.from('" length="');
const TIME = Buffer.from('" time="');
const END = Buffer.from('"/>\n');

/**
 * Merges mapping calls into maximal runs (origin+1, data+1, same time) and calls emitRun for
 * each finished run. Subclasses print.
 */
export abstract class RunMergingSink implements MetadataSink {
  protected readonly buf: BufferedOutput;
  private runOrigin = 0;
  private runData = 0;
  private runLength = 0;
  private runTime = 0;
  private inDevice = false;

  constructor(out: OutputFn, opts: WriterOptions = {}) {
    this.buf = new BufferedOutput(out, opts.flushBytes ?? DEFAULT_FLUSH, opts.bytes);
  }

  abstract superblock(sb: SuperblockInfo): void;
  protected abstract beginDevice(dev: DeviceInfo): void;
  protected abstract emitRun(origin: number, data: number, length: number, time: number): void;
  protected abstract finishDevice(): void;
  protected abstract finishSuperblock(): void;

  device(dev: DeviceInfo): void {
    this.inDevice = true;
    this.runLength = 0;
    this.beginDevice(dev);
  }

  mapping(originBegin: number, dataBegin: number, length: number, time: number): void {
    if (!this.inDevice) throw new ThinError('E_INVALID', 'mapping() called outside a device; call device() first');
    if (length <= 0) return;
    const end = this.runOrigin + this.runLength;
    if (this.runLength > 0) {
      if (originBegin === end && dataBegin === this.runData + this.runLength && time === this.runTime) {
        this.runLength += length;
        return;
      }
      if (originBegin < end) {
        throw new ThinError('E_INVALID', `mapping at origin ${originBegin} is out of order (previous run ends at ${end - 1}); mappings must be sorted by origin`, { originBegin });
      }
      this.emitRun(this.runOrigin, this.runData, this.runLength, this.runTime);
    }
    this.runOrigin = originBegin;
    this.runData = dataBegin;
    this.runLength = length;
    this.runTime = time;
  }

  endDevice(): void {
    if (this.runLength > 0) this.emitRun(this.runOrigin, this.runData, this.runLength, this.runTime);
    this.runLength = 0;
    this.inDevice = false;
    this.finishDevice();
  }

  endSuperblock(): void {
    this.finishSuperblock();
    this.buf.flush();
  }

  /** Hand on whatever is buffered now. */
  flush(): void {
    this.buf.flush();
  }
}

/** thin_dump 0.9.0 XML (the default `-f xml`). */
export class XmlWriter extends RunMergingSink {
  superblock(sb: SuperblockInfo): void {
    this.buf.push(
      `<superblock uuid="${escapeAttr(sb.uuid)}" time="${sb.time}" transaction="${sb.transaction}" flags="${sb.flags}" version="${sb.version}" data_block_size="${sb.dataBlockSize}" nr_data_blocks="${sb.nrDataBlocks}">\n`,
    );
  }

  protected beginDevice(d: DeviceInfo): void {
    this.buf.push(
      `  <device dev_id="${d.devId}" mapped_blocks="${d.mappedBlocks}" transaction="${d.transaction}" creation_time="${d.creationTime}" snap_time="${d.snapTime}">\n`,
    );
  }

  protected emitRun(o: number, d: number, len: number, t: number): void {
    const b = this.buf;
    if (b.binary) {
      // The same text as below, without a string per line (at most ~140 bytes).
      b.room(160);
      if (len === 1) {
        b.ascii(SINGLE_0); b.num(o); b.ascii(SINGLE_1); b.num(d);
      } else {
        b.ascii(RANGE_0); b.num(o); b.ascii(RANGE_1); b.num(d); b.ascii(RANGE_2); b.num(len);
      }
      b.ascii(TIME); b.num(t); b.ascii(END);
      b.mark();
      return;
    }
    b.push(
      len === 1
        ? `    <single_mapping origin_block="${o}" data_block="${d}" time="${t}"/>\n`
        : `    <range_mapping origin_begin="${o}" data_begin="${d}" length="${len}" time="${t}"/>\n`,
    );
  }

  protected finishDevice(): void {
    this.buf.push('  </device>\n');
  }

  protected finishSuperblock(): void {
    this.buf.push('</superblock>\n');
  }
}

/**
 * thin_dump 0.9.0 `-f human_readable`:
 *   begin superblock: "uuid", time, transaction, flags, version, data_block_size, nr_data_blocks
 *   device: D / mapped_blocks: M / transaction: X / creation time: C / snap time: S (one per line)
 *       (O..O+L-1) -> (B..B+L-1), T      for a run, or      O -> B, T      for one block
 *   an empty line after each device, then "end superblock".
 * (1.1 prints single blocks as "(O..O) -> (B..B), T".)
 */
export class HumanReadableWriter extends RunMergingSink {
  superblock(sb: SuperblockInfo): void {
    this.buf.push(
      `begin superblock: "${sb.uuid}", ${sb.time}, ${sb.transaction}, ${sb.flags}, ${sb.version}, ${sb.dataBlockSize}, ${sb.nrDataBlocks}\n`,
    );
  }

  protected beginDevice(d: DeviceInfo): void {
    this.buf.push(
      `device: ${d.devId}\nmapped_blocks: ${d.mappedBlocks}\ntransaction: ${d.transaction}\ncreation time: ${d.creationTime}\nsnap time: ${d.snapTime}\n`,
    );
  }

  protected emitRun(o: number, d: number, len: number, t: number): void {
    this.buf.push(
      len === 1 ? `    ${o} -> ${d}, ${t}\n` : `    (${o}..${o + len - 1}) -> (${d}..${d + len - 1}), ${t}\n`,
    );
  }

  protected finishDevice(): void {
    this.buf.push('\n');
  }

  protected finishSuperblock(): void {
    this.buf.push('end superblock\n');
  }
}

/**
 * JSON form of a dump, streamed. Shape (one device or mapping per line, runs merged as in XML):
 *
 *   {"superblock":{"uuid":"","time":1,"transaction":2,"flags":0,"version":2,
 *                  "data_block_size":128,"nr_data_blocks":1024[,"metadata_snap":N]},
 *    "devices":[
 *     {"dev_id":0,"mapped_blocks":111,"transaction":0,"creation_time":0,"snap_time":1,"mappings":[
 *      {"origin_begin":0,"data_begin":0,"length":100,"time":0},
 *      ...]},
 *     ...]}
 *
 * Keys use thin_dump's XML attribute names; every mapping is a run (length >= 1). Numbers are
 * exact (all <= 2^53 - 1). Unlike the XML writer, metadata_snap is kept when present.
 */
export class JsonWriter extends RunMergingSink {
  private devices = 0;
  private runs = 0;

  superblock(sb: SuperblockInfo): void {
    const s: Record<string, unknown> = {
      uuid: sb.uuid,
      time: sb.time,
      transaction: sb.transaction,
      flags: sb.flags,
      version: sb.version,
      data_block_size: sb.dataBlockSize,
      nr_data_blocks: sb.nrDataBlocks,
    };
    if (sb.metadataSnap !== undefined) s.metadata_snap = sb.metadataSnap;
    this.buf.push(`{"superblock":${JSON.stringify(s)},\n "devices":[`);
    this.devices = 0;
  }

  protected beginDevice(d: DeviceInfo): void {
    this.buf.push(
      `${this.devices++ === 0 ? '\n' : ',\n'}  {"dev_id":${d.devId},"mapped_blocks":${d.mappedBlocks},"transaction":${d.transaction},"creation_time":${d.creationTime},"snap_time":${d.snapTime},"mappings":[`,
    );
    this.runs = 0;
  }

  protected emitRun(o: number, d: number, len: number, t: number): void {
    this.buf.push(`${this.runs++ === 0 ? '\n' : ',\n'}   {"origin_begin":${o},"data_begin":${d},"length":${len},"time":${t}}`);
  }

  protected finishDevice(): void {
    this.buf.push(']}');
  }

  protected finishSuperblock(): void {
    this.buf.push(this.devices > 0 ? '\n ]}\n' : ']}\n');
  }
}
