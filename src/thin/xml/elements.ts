/**
 * The XML reader's element state machine: which element may stand where, and each
 * element's meaning as MetadataSink calls (types.ts). reader.ts feeds it saxes' open
 * and close events, and the mappings its fast path decodes (`mappingValues`).
 *
 * Contract:
 * - The document is one `<superblock>` holding `<device>` elements (and, when defs are
 *   allowed, thin_dump 1.x's `<def name>` blocks), each holding `<single_mapping>` and
 *   `<range_mapping>` (and, in a device, `<ref name>`); mappings and refs are empty.
 *   Anything else, or anything elsewhere, is an E_PARSE error at its tag naming the
 *   element and where it may stand (reader-errors.ts).
 * - Each element is handed on as soon as its start tag closes; mappings are never
 *   kept, except a def's runs, packed four numbers per run until the document ends,
 *   which a `<ref>` replays into its device.
 * - Rejected on purpose, although thin_restore 0.9.0 takes them: a device listed
 *   twice; mappings out of origin order or overlapping inside a device or a def
 *   (0.9.0 inserts them one by one and leaks the data block of an overwritten
 *   mapping; a dump never contains them); a mapping past block 2^53-1; a data block
 *   >= nr_data_blocks (0.9.0 rejects these too; `checkDataBlocks: false` lets
 *   `thin_dump -m` output, with nr_data_blocks="0", through). A range's length is
 *   above 0.
 * - `mappingValues` is the one check of a mapping's numbers, for both of the
 *   reader's paths; it allocates nothing.
 */
import { num, parseDevice, parseSuperblock, requireAttr, type Attributes } from './attributes';
import type { XmlErrors } from './reader-errors';
import { MAX_SAFE, MAX_U32, type MetadataSink, type SuperblockInfo } from './types';

export type Context = 'document' | 'superblock' | 'device' | 'def' | 'empty' | 'done';

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

export class ElementHandler {
  /** Where the reader stands: the innermost open element's kind. */
  context: Context = 'document';
  /** Context to return to when the current element closes. */
  private readonly stack: Context[] = [];
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

  constructor(
    private readonly sink: MetadataSink,
    private readonly err: XmlErrors,
    private readonly allowDefs: boolean,
    private readonly checkDataBlocks: boolean,
  ) {}

  /** A start tag closed (saxes' opentag). */
  open(name: string, a: Attributes): void {
    const ctx = this.context;
    const err = this.err;
    let next: Context;

    if (ctx === 'empty') {
      throw err.tag(name, `<${this.elementName()}> must be empty, but it contains <${name}>`);
    }
    if (name === 'superblock') {
      if (ctx !== 'document') throw err.tag(name, '<superblock> may appear only once, as the root element');
      this.sb = parseSuperblock(err, a);
      this.sink.superblock(this.sb);
      next = 'superblock';
    } else if (name === 'device') {
      if (ctx !== 'superblock') throw err.tag(name, this.placement(name, '<superblock>'));
      const dev = parseDevice(err, a);
      if (this.seenDevices.has(dev.devId)) {
        throw err.tag(name, `duplicate device: dev_id="${dev.devId}" appears twice; each thin device may be listed once`, 'dev_id');
      }
      this.seenDevices.add(dev.devId);
      this.devId = dev.devId;
      this.nextOrigin = 0;
      this.sink.device(dev);
      next = 'device';
    } else if (MAPPING_ELEMENTS.has(name)) {
      if (ctx !== 'device' && ctx !== 'def') {
        throw err.tag(name, this.placement(name, this.allowDefs ? '<device> or <def>' : '<device>'));
      }
      this.mapping(name, a);
      next = 'empty';
    } else if (name === 'def' && this.allowDefs) {
      if (ctx !== 'superblock') throw err.tag(name, this.placement(name, '<superblock>'));
      const defName = requireAttr(err, name, a, 'name');
      if (this.defs.has(defName)) throw err.tag(name, `duplicate <def name="${defName}">; def names must be unique`, 'name');
      this.currentDef = new RunList();
      this.currentDefName = defName;
      this.nextOrigin = 0;
      next = 'def';
    } else if (name === 'ref' && this.allowDefs) {
      if (ctx !== 'device') throw err.tag(name, this.placement(name, '<device>'));
      const refName = requireAttr(err, name, a, 'name');
      const runs = this.defs.get(refName);
      if (!runs) {
        throw err.tag(name, `<ref name="${refName}"> refers to no earlier <def name="${refName}">; a def must come before its refs`, 'name');
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
      throw err.tag(name, `unknown element <${name}>; thin_dump XML uses only ${known}`);
    }
    if (next === 'empty') this.emptyName = name;
    this.stack.push(ctx);
    this.context = next;
  }

  /** An element closed (saxes' closetag; saxes has checked that it matches). */
  close(name: string): void {
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

  /** Has `</superblock>` been seen? */
  get done(): boolean {
    return this.context === 'done';
  }

  private mapping(name: string, a: Attributes): void {
    const err = this.err;
    let origin: number;
    let data: number;
    let length: number;
    if (name === 'single_mapping') {
      origin = num(err, name, a, 'origin_block', MAX_SAFE);
      data = num(err, name, a, 'data_block', MAX_SAFE);
      length = 1;
    } else {
      origin = num(err, name, a, 'origin_begin', MAX_SAFE);
      data = num(err, name, a, 'data_begin', MAX_SAFE);
      length = num(err, name, a, 'length', MAX_SAFE);
      if (length === 0) throw err.tag(name, `<range_mapping> attribute length="0": a range must map at least 1 block`, 'length');
    }
    const time = num(err, name, a, 'time', MAX_U32, 'a u32 time');
    this.mappingValues(name, origin, data, length, time);
  }

  /**
   * A mapping element's numbers, each already a whole number within its own bound;
   * the context is a device or a def.
   */
  mappingValues(name: string, origin: number, data: number, length: number, time: number): void {
    const sb = this.sb!;
    if (origin > MAX_SAFE - (length - 1)) {
      throw this.err.tag(name, `<${name}> runs past origin block 2^53-1 (origin ${origin}, length ${length}); thin device sizes are far below that`);
    }
    const dataAttr = name === 'single_mapping' ? 'data_block' : 'data_begin';
    if (data > MAX_SAFE - length) {
      throw this.err.tag(name, `<${name}> runs past data block 2^53-1 (data ${data}, length ${length})`);
    }
    if (this.checkDataBlocks && data + length > sb.nrDataBlocks) {
      const last = data + length - 1;
      throw this.err.tag(name,
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
      throw this.err.tag(name,
        `mappings of ${where} must be in increasing origin order without overlap, but origin block ${origin} follows a mapping that ends at ${this.nextOrigin - 1}; sort the mappings by origin and remove duplicates`,
        attr);
    }
    this.nextOrigin = origin + length;
  }

  private placement(name: string, parent: string): string {
    return `<${name}> is not allowed inside <${this.elementName()}>; it must be directly inside ${parent}`;
  }

  /** The name of the innermost open element, as error messages show it. */
  elementName(): string {
    switch (this.context) {
      case 'document': return 'document';
      case 'superblock': return 'superblock';
      case 'device': return 'device';
      case 'def': return 'def';
      case 'done': return 'document';
      case 'empty': return this.emptyName;
    }
  }
}
