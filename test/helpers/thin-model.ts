/**
 * Random pool-content models for oracle tests: a superblock and devices whose mappings look
 * like a real pool's (runs, snapshots sharing data blocks with their origin, overwrites with
 * fresh blocks, random times), plus replay into any MetadataSink and a recording sink that
 * turns events back into a model.
 *
 * Models are plain data (single mappings, sorted) so tests compare them with deepStrictEqual.
 */

import type { DeviceInfo, MetadataSink, SuperblockInfo } from '../../src/thin/xml/types';

export interface Mapping {
  origin: number;
  data: number;
  time: number;
}

export interface ModelDevice {
  info: DeviceInfo;
  /** Sorted by origin, no duplicates. */
  mappings: Mapping[];
}

export interface Model {
  sb: SuperblockInfo;
  devices: ModelDevice[];
}

/** Small fast seeded PRNG (mulberry32). */
export function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  /** Integer in [0, n). */
  return (n: number) => Math.floor(next() * n);
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
export function genModel(seed: number, opts: GenOptions = {}): Model {
  const r = rng(seed);
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

  const devices: ModelDevice[] = made.map((m, i) => {
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
 * Feed a model to a sink. With `split` (a PRNG), consecutive mappings are grouped into runs of
 * random size where they are contiguous, so writers must merge across calls.
 */
export function replay(model: Model, sink: MetadataSink, split?: (n: number) => number): void {
  sink.superblock(model.sb);
  for (const dev of model.devices) {
    sink.device(dev.info);
    const ms = dev.mappings;
    let i = 0;
    while (i < ms.length) {
      let len = 1;
      const want = split ? 1 + split(8) : 1;
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

/** A sink that rebuilds a Model (single mappings) and checks the call order. */
export class RecordingSink implements MetadataSink {
  sb: SuperblockInfo | undefined;
  devices: ModelDevice[] = [];
  ended = false;
  private cur: ModelDevice | undefined;

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
  model(): Model {
    if (!this.ended) throw new Error('stream not finished');
    return { sb: this.sb!, devices: this.devices };
  }
}

/** Per-device exclusive counts by thin_ls's rule (a data block used by exactly one mapping). */
export function exclusiveCounts(model: Model): Map<number, number> {
  const uses = new Map<number, number>();
  for (const d of model.devices) for (const m of d.mappings) uses.set(m.data, (uses.get(m.data) ?? 0) + 1);
  const out = new Map<number, number>();
  for (const d of model.devices) out.set(d.info.devId, d.mappings.filter((m) => uses.get(m.data) === 1).length);
  return out;
}
