/**
 * Dump writers: MetadataSink implementations that print a metadata stream the way
 * thin_dump 0.9.0 does (XML and `-f human_readable`), plus a JSON form of the same content.
 *
 * Contract: output goes to `out(chunk)` in pieces of about `flushBytes` (64 KiB) characters and
 * once more at endSuperblock (or on flush()), so a dump of any size streams in constant memory.
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
}

const DEFAULT_FLUSH = 64 * 1024;

/** Escape an attribute value (only uuid can hold arbitrary text). */
export function escapeAttr(s: string): string {
  return s.replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}

/** Collects output text and hands it on in large pieces. */
export class BufferedOutput {
  private parts: string[] = [];
  private size = 0;
  constructor(private readonly out: OutputFn, private readonly flushBytes = DEFAULT_FLUSH) {}

  push(s: string): void {
    this.parts.push(s);
    this.size += s.length;
    if (this.size >= this.flushBytes) this.flush();
  }

  flush(): void {
    if (this.size === 0) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.size = 0;
    this.out(chunk);
  }
}

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
    this.buf = new BufferedOutput(out, opts.flushBytes ?? DEFAULT_FLUSH);
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
    this.buf.push(
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
