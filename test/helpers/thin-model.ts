/**
 * The model of a thin_dump document (DumpModel: a superblock and its devices, each with its
 * details and single mappings, sorted) for oracle tests, and three ways to get one:
 *  - genModel: a random pool whose mappings look like a real pool's (runs, snapshots sharing
 *    data blocks with their origin, overwrites with fresh blocks, random times);
 *  - RecordingSink: what a MetadataSink is fed (our XML reader, our dump), turned back into one;
 *    parseModel: thin_dump XML read by our reader (src/thin/xml/reader) into one;
 *  - parseToolDump: the XML a real thin_dump printed, read by this file's own small parser,
 *    independent of src/thin/xml/reader, so the tool's output can be the oracle.
 * replay() feeds one to any MetadataSink.
 *
 * Models are plain data so tests compare them with deepStrictEqual. (metadata-model.ts models what
 * pool metadata holds while it changes, PoolState; pool-model.ts models device content, bytes.
 * PoolModel.expectedDump turns a PoolState into a DumpModel.)
 */

import assert from 'node:assert/strict';
import { Rand } from '../../support/random';
import { parseXml, type ReadXmlOptions } from '../../src/thin/xml/reader';
import type { DeviceInfo, MetadataSink, SuperblockInfo } from '../../src/thin/xml/types';

export interface Mapping {
  origin: number;
  data: number;
  time: number;
}

/** One <device> of a dump: its details record and its mappings. */
export interface DumpDevice {
  info: DeviceInfo;
  /** Sorted by origin, no duplicates. */
  mappings: Mapping[];
}

/** What thin_dump prints for a pool (or for its metadata snapshot, with -m). */
export interface DumpModel {
  sb: SuperblockInfo;
  devices: DumpDevice[];
}

export interface GenOptions {
  maxDevices?: number;
  /** Rough upper bound of mappings per device. */
  maxMappings?: number;
  /**
   * Sometimes map one data block at two virtual blocks of the same device (default true).
   * thin_restore 0.9.0 handles it; 1.1's thin_restore miscounts the data block (its own
   * thin_check then reports a bad reference count), so 1.x restores need it off.
   */
  dupWithinDevice?: boolean;
}

/** Generate a random model from `seed`. */
export function genModel(seed: number, opts: GenOptions = {}): DumpModel {
  const rand = new Rand(seed);
  const r = (n: number) => rand.int(n);
  const chance = (p: number) => r(1_000_000) < p * 1_000_000;
  const maxDevices = opts.maxDevices ?? 5;
  const maxMappings = opts.maxMappings ?? 400;

  const nrDataBlocks = 2000 + r(60000);
  const time = chance(0.2) ? r(2 ** 24) : r(20);
  const sb: SuperblockInfo = {
    uuid: '',
    time,
    transaction: chance(0.2) ? r(2 ** 31) * 2 ** 21 + r(2 ** 21) : r(100),
    flags: 0,
    version: chance(0.5) ? 1 : 2,
    dataBlockSize: [128, 128, 256, 1024, 2097152][r(5)],
    nrDataBlocks,
  };

  // Data allocator: mostly sequential, with jumps, never reusing a block.
  const used = new Uint8Array(nrDataBlocks);
  let cursor = r(nrDataBlocks);
  const alloc = (): number | undefined => {
    if (chance(0.05)) cursor = r(nrDataBlocks);
    for (let tries = 0; tries < nrDataBlocks; tries++) {
      const b = cursor;
      cursor = (cursor + 1) % nrDataBlocks;
      if (!used[b]) {
        used[b] = 1;
        return b;
      }
    }
    return undefined;
  };
  const anyTime = () => (chance(0.7) ? r(time + 1) : time);

  const nDev = 1 + r(maxDevices);
  const ids = new Set<number>();
  while (ids.size < nDev) ids.add(chance(0.2) ? r(2 ** 24) : r(20));
  const devIds = [...ids].sort((a, b) => a - b);

  const made: Map<number, Mapping>[] = [];
  for (let i = 0; i < nDev; i++) {
    const m = new Map<number, Mapping>();
    const parent = made.length > 0 && chance(0.6) ? made[r(made.length)] : undefined;
    if (parent) {
      // Snapshot: share the parent's blocks, then break sharing on some and add new ones.
      for (const [o, mp] of parent) if (!chance(0.05)) m.set(o, { ...mp });
      for (const o of [...m.keys()]) {
        if (chance(0.15)) {
          const d = alloc();
          if (d !== undefined) m.set(o, { origin: o, data: d, time });
        }
      }
    }
    if (!parent || chance(0.7)) {
      const nRuns = chance(0.1) ? 0 : 1 + r(Math.max(1, maxMappings / 10));
      let o = r(50);
      for (let k = 0; k < nRuns; k++) {
        o += chance(0.1) ? r(100000) : r(30);
        const len = chance(0.3) ? 1 : 1 + r(40);
        let t = anyTime();
        for (let j = 0; j < len; j++, o++) {
          if (chance(0.03)) t = anyTime();
          const d = chance(0.1) ? alloc() : allocNext(m, o, alloc, used);
          if (d === undefined) break;
          m.set(o, { origin: o, data: d, time: t });
        }
      }
    }
    if ((opts.dupWithinDevice ?? true) && chance(0.15) && m.size > 0) {
      // The same data block behind two virtual blocks of one device.
      const vals = [...m.values()];
      const src = vals[r(vals.length)];
      const o = src.origin + 1 + r(1000);
      if (!m.has(o)) m.set(o, { origin: o, data: src.data, time: src.time });
    }
    made.push(m);
  }

  const devices: DumpDevice[] = made.map((m, i) => {
    const mappings = [...m.values()].sort((a, b) => a.origin - b.origin);
    return {
      info: {
        devId: devIds[i],
        mappedBlocks: mappings.length,
        transaction: chance(0.2) ? r(2 ** 31) * 2 ** 21 : r(50),
        creationTime: chance(0.1) ? r(2 ** 32) : r(time + 1),
        snapTime: chance(0.1) ? r(2 ** 32) : r(time + 1),
      },
      mappings,
    };
  });
  return { sb, devices };
}

/** Continue a data run: the block after the previous origin's block when it is free. */
function allocNext(m: Map<number, Mapping>, o: number, alloc: () => number | undefined, used: Uint8Array): number | undefined {
  const prev = m.get(o - 1);
  if (prev && prev.data + 1 < used.length && !used[prev.data + 1]) {
    used[prev.data + 1] = 1;
    return prev.data + 1;
  }
  return alloc();
}

/**
 * Feed a model to a sink. With `split`, consecutive mappings are grouped into runs of random
 * size where they are contiguous, so writers must merge across calls.
 */
export function replay(model: DumpModel, sink: MetadataSink, split?: Rand): void {
  sink.superblock(model.sb);
  for (const dev of model.devices) {
    sink.device(dev.info);
    const ms = dev.mappings;
    let i = 0;
    while (i < ms.length) {
      let len = 1;
      const want = split ? 1 + split.int(8) : 1;
      while (
        len < want &&
        i + len < ms.length &&
        ms[i + len].origin === ms[i].origin + len &&
        ms[i + len].data === ms[i].data + len &&
        ms[i + len].time === ms[i].time
      ) {
        len++;
      }
      sink.mapping(ms[i].origin, ms[i].data, len, ms[i].time);
      i += len;
    }
    sink.endDevice();
  }
  sink.endSuperblock();
}

/** A sink that rebuilds a DumpModel (single mappings) and checks the call order. */
export class RecordingSink implements MetadataSink {
  sb: SuperblockInfo | undefined;
  devices: DumpDevice[] = [];
  ended = false;
  private cur: DumpDevice | undefined;

  superblock(sb: SuperblockInfo): void {
    if (this.sb) throw new Error('superblock() twice');
    this.sb = sb;
  }
  device(dev: DeviceInfo): void {
    if (!this.sb || this.cur) throw new Error('device() out of place');
    this.cur = { info: dev, mappings: [] };
  }
  mapping(o: number, d: number, len: number, t: number): void {
    if (!this.cur) throw new Error('mapping() outside a device');
    for (let i = 0; i < len; i++) this.cur.mappings.push({ origin: o + i, data: d + i, time: t });
  }
  endDevice(): void {
    if (!this.cur) throw new Error('endDevice() without device()');
    this.devices.push(this.cur);
    this.cur = undefined;
  }
  endSuperblock(): void {
    if (this.cur || !this.sb) throw new Error('endSuperblock() out of place');
    this.ended = true;
  }
  model(): DumpModel {
    if (!this.ended) throw new Error('stream not finished');
    return { sb: this.sb!, devices: this.devices };
  }
}

/** thin_dump XML read by our reader (the code under test) into a DumpModel. */
export function parseModel(xml: string, opts: ReadXmlOptions = {}): DumpModel {
  const rec = new RecordingSink();
  parseXml(xml, rec, opts);
  return rec.model();
}

/** Per-device exclusive counts by thin_ls's rule (a data block used by exactly one mapping). */
export function exclusiveCounts(model: DumpModel): Map<number, number> {
  const uses = new Map<number, number>();
  for (const d of model.devices) for (const m of d.mappings) uses.set(m.data, (uses.get(m.data) ?? 0) + 1);
  const out = new Map<number, number>();
  for (const d of model.devices) out.set(d.info.devId, d.mappings.filter((m) => uses.get(m.data) === 1).length);
  return out;
}

/**
 * Read thin_dump XML (0.9.0 flat, or 1.x with <def>/<ref>) into a DumpModel with this file's
 * own parser, a plain reading of the tools' fixed output format independent of
 * src/thin/xml/reader, for tests whose oracle is the tool's output. Attributes the tool omits
 * take the format's defaults (flags 0, version 2).
 */
export function parseToolDump(xml: string): DumpModel {
  const attrs = (s: string) => {
    const o: Record<string, string> = {};
    for (const m of s.matchAll(/(\w+)="([^"]*)"/g)) o[m[1]] = m[2];
    return o;
  };
  const num = (o: Record<string, string>, k: string, dflt?: number): number => {
    if (o[k] === undefined && dflt !== undefined) return dflt;
    assert.match(o[k] ?? '', /^\d+$/, `thin_dump printed ${k}="${o[k]}"`);
    return Number(o[k]);
  };
  const sbm = /<superblock([^>]*)>/.exec(xml);
  assert.ok(sbm, `thin_dump printed no superblock: ${xml.slice(0, 200)}`);
  const a = attrs(sbm[1]);
  const sb: SuperblockInfo = {
    uuid: a.uuid ?? '', time: num(a, 'time'), transaction: num(a, 'transaction'), flags: num(a, 'flags', 0),
    version: num(a, 'version', 2), dataBlockSize: num(a, 'data_block_size'), nrDataBlocks: num(a, 'nr_data_blocks'),
  };
  const devices: DumpDevice[] = [];
  let cur: Mapping[] | undefined;
  // thin_dump 1.x prints subtrees shared by several devices once, as <def name="..."> before
  // the devices, which then hold <ref name="..."/> where that subtree's mappings belong.
  const defs = new Map<string, Mapping[]>();
  for (const m of xml.matchAll(/<(\/?)(device|def|ref|single_mapping|range_mapping)\b([^>]*)>/g)) {
    const [, close, el] = m;
    const at = attrs(m[3]);
    if (close) {
      cur = undefined;
      continue;
    }
    const into = (): Mapping[] => {
      assert.ok(cur, `thin_dump printed <${el}> outside a <device> or <def>`);
      return cur;
    };
    if (el === 'device') {
      cur = [];
      const info = {
        devId: num(at, 'dev_id'), mappedBlocks: num(at, 'mapped_blocks'), transaction: num(at, 'transaction'),
        creationTime: num(at, 'creation_time'), snapTime: num(at, 'snap_time'),
      };
      devices.push({ info, mappings: cur });
    } else if (el === 'def') {
      cur = [];
      defs.set(at.name, cur);
    } else if (el === 'ref') {
      const shared = defs.get(at.name);
      assert.ok(shared, `thin_dump printed <ref name="${at.name}"/> before its <def>`);
      into().push(...shared);
    } else if (el === 'single_mapping') {
      into().push({ origin: num(at, 'origin_block'), data: num(at, 'data_block'), time: num(at, 'time') });
    } else {
      const list = into();
      const o = num(at, 'origin_begin');
      const d = num(at, 'data_begin');
      const t = num(at, 'time');
      for (let i = 0; i < num(at, 'length'); i++) list.push({ origin: o + i, data: d + i, time: t });
    }
  }
  for (const d of devices) d.mappings.sort((x, y) => x.origin - y.origin);
  return { sb, devices };
}

/** The ids of a dump's devices, ascending. */
export function dumpIds(d: DumpModel): number[] {
  return d.devices.map((x) => x.info.devId).sort((a, b) => a - b);
}

/** Device `id` of a dump as virtual block -> data block; undefined when the dump has no such device. */
export function blockMap(d: DumpModel, id: number): Map<number, number> | undefined {
  const dev = d.devices.find((x) => x.info.devId === id);
  return dev && new Map(dev.mappings.map((m) => [m.origin, m.data]));
}
