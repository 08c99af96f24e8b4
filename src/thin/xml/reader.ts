/**
 * Streaming reader for thin_dump XML (what thin_restore reads), built on saxes.
 *
 * Contract: input is consumed chunk by chunk and turned into MetadataSink calls (types.ts) as
 * soon as each element closes its start tag; mappings are never accumulated, so memory is
 * bounded by one input chunk whatever the size of the dump. The one exception is thin_dump
 * 1.x's `<def name>` blocks (named runs shared between devices, defined at superblock level
 * and expanded where a device says `<ref name>`): their runs must be kept until the end of the
 * document, packed four numbers per run.
 *
 * Fast path: `writeBytes` (what readXml uses) takes input as bytes, line by line; a line
 * that is exactly one canonical mapping element as thin_dump prints it
 * (`<single_mapping origin_block=".." data_block=".." time=".."/>`, or `<range_mapping
 * origin_begin=".." data_begin=".." length=".." time=".."/>`, attributes in that order,
 * small decimal numbers), met where saxes stands between elements inside a <device> or
 * <def>, is decoded straight from the bytes and checked by the same code as saxes' events;
 * every other line goes through saxes. Line numbers in errors count the lines saxes did
 * not see, so both paths report the same positions.
 *
 * Every problem is a ThinError('E_PARSE', message, { line, column, element?, attribute? })
 * whose message names the element and attribute and says what to change; `line` and `column`
 * (both 1-based) point at the start of the offending tag, or at the character where the XML
 * stopped being well-formed.
 *
 * Accepted: thin_restore 0.9.0's flat format, plus 1.x `<def>`/`<ref>` (optional, on by
 * default). Attributes thin_restore does not know are ignored, as 0.9.0 does.
 * Rejected on purpose, although thin_restore 0.9.0 takes them:
 *  - mappings out of origin order or overlapping inside a device (0.9.0 inserts them one by one
 *    and leaks the data block of an overwritten mapping; a dump never contains them);
 *  - a mapping whose data block is >= nr_data_blocks (0.9.0 rejects these too; option
 *    checkDataBlocks: false lets `thin_dump -m` output, with nr_data_blocks="0", through);
 *  - numbers above 2^53 - 1 (not representable as JS numbers), u32 fields (times, flags,
 *    version, data_block_size) >= 2^32, dev_id >= 2^24, data_block_size 0;
 *  - non-whitespace text between elements, CDATA.
 * Times are accepted up to 2^32 - 1 because the XML and the details tree store them as u32; the
 * mapping tree's block_time keeps only 24 bits of time, so the metadata writer rejects times
 * >= 2^24 (that is the layer that knows the packing).
 */

import * as fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import { ThinError } from '../../errors';
import { MappingLine, scanMappingLine } from './fast-lines';
import { MAX_DEV_ID, MAX_SAFE, MAX_U32, type DeviceInfo, type MetadataSink, type SuperblockInfo } from './types';

export interface ReadXmlOptions {
  /** Shown in error messages and put in error details as `file`. */
  fileName?: string;
  /** Accept thin_dump 1.x `<def>`/`<ref>` elements (default true). */
  allowDefs?: boolean;
  /**
   * Reject data blocks >= nr_data_blocks (default true). Turn off only to read `thin_dump -m`
   * output, which prints nr_data_blocks="0" because the snapshot copy has no data space map.
   */
  checkDataBlocks?: boolean;
}

type Context = 'document' | 'superblock' | 'device' | 'def' | 'empty' | 'done';

/** Packed runs of one `<def>`: [origin, data, length, time] * n. */
class RunList {
  private buf = new Float64Array(64);
  length = 0;
  push(o: number, d: number, len: number, t: number): void {
    if (this.length * 4 + 4 > this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    const i = this.length * 4;
    this.buf[i] = o;
    this.buf[i + 1] = d;
    this.buf[i + 2] = len;
    this.buf[i + 3] = t;
    this.length++;
  }
  get(i: number): [number, number, number, number] {
    const j = i * 4;
    return [this.buf[j], this.buf[j + 1], this.buf[j + 2], this.buf[j + 3]];
  }
}

const MAPPING_ELEMENTS = new Set(['single_mapping', 'range_mapping']);

/**
 * Push-style reader: feed text with write(), finish with end(). Use readXml() for files and
 * streams; this class is for callers that already hold the chunks.
 */
export class XmlReader {
  private readonly parser: SaxesParser<{}>;
  private readonly sink: MetadataSink;
  private readonly fileName?: string;
  private readonly allowDefs: boolean;
  private readonly checkDataBlocks: boolean;
  private failed: ThinError | undefined;

  private context: Context = 'document';
  /** Context to return to when the current element closes. */
  private readonly stack: Context[] = [];
  /** The mapping line being scanned (reused). */
  private readonly line: MappingLine = { name: 'single_mapping', origin: 0, data: 0, length: 0, time: 0, column: 0 };
  /** Lines taken by the fast path, which saxes never saw (added to its line numbers). */
  private skippedLines = 0;
  /** Bytes after the last newline given to writeBytes (an incomplete line). */
  private carry: Buffer | undefined;
  private tagLine = 1;
  private tagColumn = 1;
  /** Name of the open element that must stay empty (a mapping or a ref). */
  private emptyName = '';

  private sb: SuperblockInfo | undefined;
  private readonly seenDevices = new Set<number>();
  private devId = -1;
  /** First origin block the next mapping of the current device (or def) may use. */
  private nextOrigin = 0;
  private readonly defs = new Map<string, RunList>();
  private currentDef: RunList | undefined;
  private currentDefName = '';

  constructor(sink: MetadataSink, opts: ReadXmlOptions = {}) {
    this.sink = sink;
    this.fileName = opts.fileName;
    this.allowDefs = opts.allowDefs ?? true;
    this.checkDataBlocks = opts.checkDataBlocks ?? true;
    this.parser = new SaxesParser({ position: true });
    this.parser.on('error', (err) => {
      // saxes prefixes "line:column: "; the position goes into details instead.
      const msg = err.message.replace(/^(?:.*?:)?\d+:\d+: /, '');
      throw this.error(`malformed XML: ${msg}`, this.errorPosition());
    });
    this.parser.on('opentagstart', (tag) => {
      this.tagLine = this.parser.line + this.skippedLines;
      this.tagColumn = Math.max(1, this.parser.column - tag.name.length - 1);
    });
    this.parser.on('opentag', (tag) => this.open(tag as SaxesTagPlain));
    this.parser.on('closetag', (tag) => this.close(tag.name));
    this.parser.on('text', (text) => {
      if (/\S/.test(text)) {
        throw this.error(`unexpected text ${JSON.stringify(text.trim().slice(0, 40))} inside <${this.elementName()}>; thin_dump XML holds only elements`, this.here());
      }
    });
    this.parser.on('cdata', () => {
      throw this.error('unexpected CDATA section; thin_dump XML holds only elements', this.here());
    });
  }

  /** Feed the next piece of the document. Throws ThinError('E_PARSE') at the first problem. */
  write(chunk: string): void {
    if (this.failed) throw this.failed;
    try {
      this.parser.write(chunk);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /**
   * Feed the next piece of the document as UTF-8 bytes, with the fast path for mapping
   * lines (see the header). Do not mix with `write` except after the last `writeBytes`.
   */
  writeBytes(chunk: Buffer): void {
    if (this.failed) throw this.failed;
    try {
      let buf = chunk;
      if (this.carry !== undefined) {
        // Finish the carried line on its own, so the chunk is never copied whole.
        const nl = chunk.indexOf(10);
        const head = Buffer.concat([this.carry, nl < 0 ? chunk : chunk.subarray(0, nl + 1)]);
        this.carry = undefined;
        if (nl < 0) { this.carry = head; return; }
        this.linesOf(head, head.length - 1);
        buf = chunk.subarray(nl + 1);
      }
      const lastNl = buf.lastIndexOf(10);
      if (lastNl < 0) { if (buf.length > 0) this.carry = Buffer.from(buf); return; }
      if (lastNl + 1 < buf.length) this.carry = Buffer.from(buf.subarray(lastNl + 1));
      this.linesOf(buf, lastNl);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** The whole lines of buf[0..lastNl] (lastNl: the index of the last newline). */
  private linesOf(buf: Buffer, lastNl: number): void {
    let slowFrom = 0;
    for (let p = 0; p <= lastNl;) {
      const e = buf.indexOf(10, p);
      if (this.fastLine(buf, p, e, slowFrom)) slowFrom = e + 1;
      p = e + 1;
    }
    if (slowFrom <= lastNl) this.parser.write(buf.toString('utf8', slowFrom, lastNl + 1));
  }

  /**
   * If bytes [p, e) are one canonical mapping element, hand the text before it
   * ([slowFrom, p)) to saxes, check that saxes stands between elements, and take the
   * mapping; false (nothing done) otherwise.
   */
  private fastLine(b: Buffer, p: number, e: number, slowFrom: number): boolean {
    const m = this.line;
    if (!scanMappingLine(b, p, e, m)) return false;
    // Everything before this line goes to saxes first: its events set the context.
    if (slowFrom < p) this.parser.write(b.toString('utf8', slowFrom, p));
    if (TEXT_STATE === undefined || (this.parser as unknown as { state: number }).state !== TEXT_STATE) {
      // Inside a comment, a tag or the like: this line is saxes' too.
      this.parser.write(b.toString('utf8', p, e + 1));
      return true;
    }
    if (this.context !== 'device' && this.context !== 'def') {
      this.parser.write(b.toString('utf8', p, e + 1));
      return true;
    }
    this.tagLine = this.parser.line + this.skippedLines;
    this.tagColumn = m.column;
    this.mappingValues(m.name, m.origin, m.data, m.length, m.time);
    this.skippedLines++;
    return true;
  }

  /** Signal end of input; throws if the document is incomplete. */
  end(): void {
    if (this.failed) throw this.failed;
    try {
      if (this.carry !== undefined) {
        const rest = this.carry;
        this.carry = undefined;
        this.parser.write(rest.toString('utf8'));
      }
      this.parser.close();
      if (this.context !== 'done') {
        throw this.error('document ended before </superblock>; the dump is truncated', this.here());
      }
    } catch (e) {
      throw this.fail(e);
    }
  }

  // ---- element handling -------------------------------------------------------------------

  private open(tag: SaxesTagPlain): void {
    const name = tag.name;
    const a = tag.attributes;
    const ctx = this.context;
    let next: Context;

    if (ctx === 'empty') {
      throw this.tagError(name, `<${this.elementName()}> must be empty, but it contains <${name}>`);
    }
    if (name === 'superblock') {
      if (ctx !== 'document') throw this.tagError(name, '<superblock> may appear only once, as the root element');
      this.sb = this.parseSuperblock(a);
      this.sink.superblock(this.sb);
      next = 'superblock';
    } else if (name === 'device') {
      if (ctx !== 'superblock') throw this.tagError(name, this.placement(name, '<superblock>'));
      const dev = this.parseDevice(a);
      if (this.seenDevices.has(dev.devId)) {
        throw this.tagError(name, `duplicate device: dev_id="${dev.devId}" appears twice; each thin device may be listed once`, 'dev_id');
      }
      this.seenDevices.add(dev.devId);
      this.devId = dev.devId;
      this.nextOrigin = 0;
      this.sink.device(dev);
      next = 'device';
    } else if (MAPPING_ELEMENTS.has(name)) {
      if (ctx !== 'device' && ctx !== 'def') {
        throw this.tagError(name, this.placement(name, this.allowDefs ? '<device> or <def>' : '<device>'));
      }
      this.mapping(name, a);
      next = 'empty';
    } else if (name === 'def' && this.allowDefs) {
      if (ctx !== 'superblock') throw this.tagError(name, this.placement(name, '<superblock>'));
      const defName = this.requireAttr(name, a, 'name');
      if (this.defs.has(defName)) throw this.tagError(name, `duplicate <def name="${defName}">; def names must be unique`, 'name');
      this.currentDef = new RunList();
      this.currentDefName = defName;
      this.nextOrigin = 0;
      next = 'def';
    } else if (name === 'ref' && this.allowDefs) {
      if (ctx !== 'device') throw this.tagError(name, this.placement(name, '<device>'));
      const refName = this.requireAttr(name, a, 'name');
      const runs = this.defs.get(refName);
      if (!runs) {
        throw this.tagError(name, `<ref name="${refName}"> refers to no earlier <def name="${refName}">; a def must come before its refs`, 'name');
      }
      for (let i = 0; i < runs.length; i++) {
        const [o, d, len, t] = runs.get(i);
        this.ordered(name, o, len);
        this.sink.mapping(o, d, len, t);
      }
      next = 'empty';
    } else {
      const known = this.allowDefs
        ? 'superblock, device, single_mapping, range_mapping, def, ref'
        : 'superblock, device, single_mapping, range_mapping';
      throw this.tagError(name, `unknown element <${name}>; thin_dump XML uses only ${known}`);
    }
    if (next === 'empty') this.emptyName = name;
    this.stack.push(ctx);
    this.context = next;
  }

  private close(name: string): void {
    if (name === 'superblock') {
      this.sink.endSuperblock();
    } else if (name === 'device') {
      this.sink.endDevice();
      this.devId = -1;
    } else if (name === 'def') {
      this.defs.set(this.currentDefName, this.currentDef!);
      this.currentDef = undefined;
    }
    const prev = this.stack.pop() ?? 'document';
    this.context = name === 'superblock' ? 'done' : prev;
  }

  private mapping(name: string, a: Record<string, string>): void {
    let origin: number;
    let data: number;
    let length: number;
    if (name === 'single_mapping') {
      origin = this.num(name, a, 'origin_block', MAX_SAFE);
      data = this.num(name, a, 'data_block', MAX_SAFE);
      length = 1;
    } else {
      origin = this.num(name, a, 'origin_begin', MAX_SAFE);
      data = this.num(name, a, 'data_begin', MAX_SAFE);
      length = this.num(name, a, 'length', MAX_SAFE);
      if (length === 0) throw this.tagError(name, `<range_mapping> attribute length="0": a range must map at least 1 block`, 'length');
    }
    const time = this.num(name, a, 'time', MAX_U32, 'a u32 time');
    this.mappingValues(name, origin, data, length, time);
  }

  /** A mapping element's numbers, each already a whole number within its own bound. */
  private mappingValues(name: string, origin: number, data: number, length: number, time: number): void {
    const sb = this.sb!;
    if (origin > MAX_SAFE - (length - 1)) {
      throw this.tagError(name, `<${name}> runs past origin block 2^53-1 (origin ${origin}, length ${length}); thin device sizes are far below that`);
    }
    const dataAttr = name === 'single_mapping' ? 'data_block' : 'data_begin';
    if (data > MAX_SAFE - length) {
      throw this.tagError(name, `<${name}> runs past data block 2^53-1 (data ${data}, length ${length})`);
    }
    if (this.checkDataBlocks && data + length > sb.nrDataBlocks) {
      const last = data + length - 1;
      throw this.tagError(name,
        `<${name}> maps data block ${last} but the pool has nr_data_blocks="${sb.nrDataBlocks}" (valid data blocks are 0..${sb.nrDataBlocks - 1}); raise nr_data_blocks in <superblock> or fix the mapping`,
        dataAttr);
    }
    this.ordered(name, origin, length);
    if (this.context === 'def') this.currentDef!.push(origin, data, length, time);
    else this.sink.mapping(origin, data, length, time);
  }

  /** Mappings of a device (and of a def) must be strictly increasing and must not overlap. */
  private ordered(name: string, origin: number, length: number): void {
    if (origin < this.nextOrigin) {
      const where = this.context === 'def' ? `<def name="${this.currentDefName}">` : `device ${this.devId}`;
      const attr = name === 'single_mapping' ? 'origin_block' : name === 'range_mapping' ? 'origin_begin' : 'name';
      throw this.tagError(name,
        `mappings of ${where} must be in increasing origin order without overlap, but origin block ${origin} follows a mapping that ends at ${this.nextOrigin - 1}; sort the mappings by origin and remove duplicates`,
        attr);
    }
    this.nextOrigin = origin + length;
  }

  private parseSuperblock(a: Record<string, string>): SuperblockInfo {
    const el = 'superblock';
    const uuid = this.requireAttr(el, a, 'uuid');
    const sb: SuperblockInfo = {
      uuid,
      time: this.num(el, a, 'time', MAX_U32, 'a u32'),
      transaction: this.num(el, a, 'transaction', MAX_SAFE),
      flags: a.flags === undefined ? 0 : this.num(el, a, 'flags', MAX_U32, 'a u32'),
      version: a.version === undefined ? 2 : this.num(el, a, 'version', MAX_U32, 'a u32'),
      dataBlockSize: this.num(el, a, 'data_block_size', MAX_U32, 'a u32 count of 512-byte sectors'),
      nrDataBlocks: this.num(el, a, 'nr_data_blocks', MAX_SAFE),
    };
    if (sb.dataBlockSize === 0) {
      throw this.tagError(el, '<superblock> attribute data_block_size="0": the data block size must be a positive number of 512-byte sectors (e.g. 128 for 64 KiB)', 'data_block_size');
    }
    if (a.metadata_snap !== undefined) sb.metadataSnap = this.num(el, a, 'metadata_snap', MAX_SAFE);
    return sb;
  }

  private parseDevice(a: Record<string, string>): DeviceInfo {
    const el = 'device';
    return {
      devId: this.num(el, a, 'dev_id', MAX_DEV_ID, 'a 24-bit thin device id'),
      mappedBlocks: this.num(el, a, 'mapped_blocks', MAX_SAFE),
      transaction: this.num(el, a, 'transaction', MAX_SAFE),
      creationTime: this.num(el, a, 'creation_time', MAX_U32, 'a u32 time'),
      snapTime: this.num(el, a, 'snap_time', MAX_U32, 'a u32 time'),
    };
  }

  // ---- attribute helpers ------------------------------------------------------------------

  private requireAttr(el: string, a: Record<string, string>, attr: string): string {
    const v = a[attr];
    if (v === undefined) {
      throw this.tagError(el, `<${el}> is missing required attribute ${attr}; add ${attr}="..." (see thin_dump's output for the format)`, attr);
    }
    return v;
  }

  private num(el: string, a: Record<string, string>, attr: string, max: number, what?: string): number {
    const s = this.requireAttr(el, a, attr);
    if (!/^[0-9]+$/.test(s)) {
      throw this.tagError(el, `<${el}> attribute ${attr}="${s}" is not a whole number; write it as decimal digits only`, attr);
    }
    const n = Number(s);
    if (n > MAX_SAFE) {
      throw this.tagError(el, `<${el}> attribute ${attr}="${s}" exceeds 2^53-1, the largest number thinsim handles exactly`, attr);
    }
    if (n > max) {
      throw this.tagError(el, `<${el}> attribute ${attr}="${s}" is out of range: it must be ${what ?? 'a number'} at most ${max}`, attr);
    }
    return n;
  }

  // ---- errors -----------------------------------------------------------------------------

  private placement(name: string, parent: string): string {
    return `<${name}> is not allowed inside <${this.elementName()}>; it must be directly inside ${parent}`;
  }

  private elementName(): string {
    switch (this.context) {
      case 'document': return 'document';
      case 'superblock': return 'superblock';
      case 'device': return 'device';
      case 'def': return 'def';
      case 'done': return 'document';
      case 'empty': return this.emptyName;
    }
  }

  /**
   * Where saxes stopped. When the character that broke the XML was a newline, saxes has
   * already moved to the next line; report the end of the line that holds the mistake.
   */
  private errorPosition(): { line: number; column: number } {
    const { chunk, prevI } = this.parser as unknown as { chunk?: string; prevI?: number };
    if (this.parser.column === 0 && this.parser.line > 1 && chunk !== undefined && prevI !== undefined && chunk.charCodeAt(prevI) === 10) {
      // Column of that newline; approximate if the line began in an earlier chunk.
      const lineStart = chunk.lastIndexOf('\n', prevI - 1) + 1;
      return { line: this.parser.line + this.skippedLines - 1, column: prevI - lineStart + 1 };
    }
    return this.here();
  }

  private here(): { line: number; column: number } {
    return { line: this.parser.line + this.skippedLines, column: this.parser.column + 1 };
  }

  private tagError(element: string, message: string, attribute?: string): ThinError {
    return this.error(message, { line: this.tagLine, column: this.tagColumn, element, ...(attribute ? { attribute } : {}) });
  }

  private error(message: string, details: { line: number; column: number; [k: string]: unknown }): ThinError {
    const where = `${this.fileName ? `${this.fileName}:` : ''}${details.line}:${details.column}`;
    return new ThinError('E_PARSE', `${where}: ${message}`, { ...details, ...(this.fileName ? { file: this.fileName } : {}) });
  }

  private fail(e: unknown): unknown {
    if (e instanceof ThinError) this.failed = e;
    return e;
  }
}

/**
 * saxes' state between elements (its private S_TEXT), read from a fragment parser, which
 * starts there; undefined if saxes changes shape (the fast path then stays off).
 */
const TEXT_STATE: number | undefined = (() => {
  const st = (new SaxesParser({ fragment: true }) as unknown as { state?: unknown }).state;
  return typeof st === 'number' ? st : undefined;
})();

/**
 * Feed a file to `reader` through one reused buffer (the reader copies what it keeps), so a
 * dump of any size allocates no buffer per chunk.
 */
async function readFileInto(file: string, reader: XmlReader): Promise<void> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ThinError(err?.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `cannot read ${file}: ${err?.message ?? String(e)}`, { file }, { cause: e });
  }
  const buf = Buffer.allocUnsafe(256 * 1024);
  try {
    for (;;) {
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, buf.length, null));
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        throw new ThinError('E_IO', `cannot read ${file}: ${err?.message ?? String(e)}`, { file }, { cause: e });
      }
      if (n === 0) break;
      reader.writeBytes(buf.subarray(0, n));
    }
  } finally {
    await fh.close();
  }
}

/** Parse a whole document held in memory. */
export function parseXml(text: string, sink: MetadataSink, opts: ReadXmlOptions = {}): void {
  const r = new XmlReader(sink, opts);
  r.write(text);
  r.end();
}

/**
 * Read a thin_dump XML document from a file path or a Readable, calling `sink` as it goes.
 * Resolves when `</superblock>` has been seen and the input has ended.
 */
export async function readXml(input: string | Readable, sink: MetadataSink, opts: ReadXmlOptions = {}): Promise<void> {
  let stream: Readable;
  let fileName = opts.fileName;
  if (typeof input === 'string') {
    fileName = fileName ?? input;
    const reader = new XmlReader(sink, { ...opts, fileName });
    await readFileInto(input, reader);
    reader.end();
    return;
  }
  stream = input;
  const reader = new XmlReader(sink, { ...opts, fileName });
  const decoder = new StringDecoder('utf8');
  let strings = false;
  try {
    for await (const chunk of stream) {
      if (typeof chunk === 'string') {
        reader.write(chunk);
        strings = true;
      } else if (strings) {
        reader.write(decoder.write(chunk as Buffer));
      } else {
        reader.writeBytes(chunk as Buffer);
      }
    }
  } catch (e) {
    stream.destroy();
    if (e instanceof ThinError) throw e;
    // The file or the caller's stream failed: still a ThinError, with the cause.
    const err = e as NodeJS.ErrnoException;
    const what = typeof input === 'string' ? input : fileName ?? 'the XML stream';
    throw new ThinError(err?.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `cannot read ${what}: ${err?.message ?? String(e)}`, fileName ? { file: fileName } : {}, { cause: e });
  }
  const rest = decoder.end();
  if (rest) reader.write(rest);
  reader.end();
}
