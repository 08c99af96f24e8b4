/**
 * Streaming reader for thin_dump XML (what thin_restore reads), built on saxes: the
 * input side. Its parts: elements.ts (the element state machine and each element's
 * meaning), attributes.ts (attribute values), reader-errors.ts (E_PARSE errors with
 * positions), fast-lines.ts (the fast path's line scanner).
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
 * default). Attributes thin_restore does not know are ignored, as 0.9.0 does. What is
 * rejected on purpose, although thin_restore 0.9.0 takes it, elements.ts and attributes.ts
 * list (out-of-order or overlapping mappings, data blocks >= nr_data_blocks, numbers
 * above their bounds); this file also rejects non-whitespace text between elements and
 * CDATA. Times are accepted up to 2^32 - 1 because the XML and the details tree store them
 * as u32; the mapping tree's block_time keeps only 24 bits of time, so the metadata writer
 * rejects times >= 2^24 (that is the layer that knows the packing).
 */

import * as fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import { ThinError } from '../../errors';
import { ElementHandler } from './elements';
import { MappingLine, scanMappingLine } from './fast-lines';
import { XmlErrors } from './reader-errors';
import type { MetadataSink } from './types';

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

/**
 * Push-style reader: feed text with write(), finish with end(). Use readXml() for files and
 * streams; this class is for callers that already hold the chunks.
 */
export class XmlReader {
  private readonly parser: SaxesParser<{}>;
  private readonly errors: XmlErrors;
  /** The element state machine: saxes' events and the fast path's mappings go there. */
  private readonly elements: ElementHandler;
  private failed: ThinError | undefined;

  /** The mapping line being scanned (reused). */
  private readonly line: MappingLine = { name: 'single_mapping', origin: 0, data: 0, length: 0, time: 0, column: 0 };
  /** Lines taken by the fast path, which saxes never saw (added to its line numbers). */
  private skippedLines = 0;
  /** Bytes after the last newline given to writeBytes (an incomplete line). */
  private carry: Buffer | undefined;

  constructor(sink: MetadataSink, opts: ReadXmlOptions = {}) {
    const errors = (this.errors = new XmlErrors(opts.fileName));
    this.elements = new ElementHandler(sink, errors, opts.allowDefs ?? true, opts.checkDataBlocks ?? true);
    this.parser = new SaxesParser({ position: true });
    this.parser.on('error', (err) => {
      // saxes prefixes "line:column: "; the position goes into details instead.
      const msg = err.message.replace(/^(?:.*?:)?\d+:\d+: /, '');
      throw errors.at(`malformed XML: ${msg}`, this.errorPosition());
    });
    this.parser.on('opentagstart', (tag) => {
      errors.tagLine = this.parser.line + this.skippedLines;
      errors.tagColumn = Math.max(1, this.parser.column - tag.name.length - 1);
    });
    this.parser.on('opentag', (tag) => this.elements.open(tag.name, (tag as SaxesTagPlain).attributes));
    this.parser.on('closetag', (tag) => this.elements.close(tag.name));
    this.parser.on('text', (text) => {
      if (/\S/.test(text)) {
        throw errors.at(`unexpected text ${JSON.stringify(text.trim().slice(0, 40))} inside <${this.elements.elementName()}>; thin_dump XML holds only elements`, this.here());
      }
    });
    this.parser.on('cdata', () => {
      throw errors.at('unexpected CDATA section; thin_dump XML holds only elements', this.here());
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
    const elements = this.elements;
    if (elements.context !== 'device' && elements.context !== 'def') {
      this.parser.write(b.toString('utf8', p, e + 1));
      return true;
    }
    this.errors.tagLine = this.parser.line + this.skippedLines;
    this.errors.tagColumn = m.column;
    elements.mappingValues(m.name, m.origin, m.data, m.length, m.time);
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
      if (!this.elements.done) {
        throw this.errors.at('document ended before </superblock>; the dump is truncated', this.here());
      }
    } catch (e) {
      throw this.fail(e);
    }
  }

  // ---- positions ------------------------------------------------------------------------

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
