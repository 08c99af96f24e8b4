/**
 * What every thin device of a pool must contain, kept in memory from the dm-thin rules alone
 * (thin-provisioning.rst), and the checks that compare a Pool with it.
 *
 * The model is a sparse map per device: virtual chunk -> ModelChunk (the chunk's bytes, which
 * bytes are defined, and how many devices share it). It never looks at the code under test:
 *  - a read of an unmapped chunk returns zeros;
 *  - a write maps the chunk; the rest of a newly mapped chunk reads as zeros, unless block
 *    zeroing is skipped (`zero: false`): then only the bytes ever written are defined;
 *  - a snapshot shares every chunk of its origin; a write to a shared chunk gives the writer a
 *    private copy (the other devices keep their bytes);
 *  - a discard unmaps the whole chunks it covers and zeroes the covered part of partial chunks
 *    that are mapped (unmapped partial chunks stay unmapped); ignore_discard does nothing.
 * Chunk identity stands for data-block identity: two devices share a data block exactly when
 * they share a ModelChunk, so the number of distinct ModelChunks is the pool's used data blocks.
 *
 * verifyPool() then reads every device back through the Pool and compares (content, mapped
 * sectors per device, used data blocks), closes the pool and runs the oracles on the metadata
 * file: our checkMetadata, thin_check 1.x and 0.9.0 (a missing tool is a skipped subtest with
 * the reason, never a silent pass), and thin_dump (1.x, else 0.9.0), whose mappings must be the
 * model's chunk sets (sharing included) with the bytes read straight from the data file at
 * block * chunk.
 *
 * (thin-model.ts models a thin_dump document, DumpModel; metadata-model.ts models the metadata of a
 * pool as it changes, PoolState. This file models what the devices read: bytes.)
 */

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type { TestContext } from 'node:test';
import { FileDevice } from '../../src/io/file-device';
import type { Pool } from '../../src/pool/pool';
import { checkMetadata, type CheckReport } from '../../src/thin/check';
import { skipPart, skipReason, tmpdir, tools09, tools1x, type Tools } from './oracle';
import { blockMap, dumpIds, parseToolDump, type DumpDevice, type DumpModel } from './thin-model';

export const KiB = 1024;
export const MiB = 1024 * 1024;

// ------------------------------------------------------------------------------ the model

export interface ModelChunk {
  data: Buffer;
  /** Byte i is defined when defined[i] === 1; undefined means every byte is defined. */
  defined?: Uint8Array;
  /** Devices mapping this chunk (sharing = one data block). */
  refs: number;
}

/** One thin device's content: its size and its mapped chunks. */
export interface ContentDevice {
  size: number;
  chunks: Map<number, ModelChunk>;
}

export interface ModelOptions {
  /** Zero the unwritten part of new chunks (default true; false = skip_block_zeroing). */
  zero?: boolean;
  discard?: 'passdown' | 'nopassdown' | 'ignore';
}

export interface Expected {
  data: Buffer;
  /** 1 = byte must match; undefined = all bytes must match. */
  defined?: Uint8Array;
}

export class ContentModel {
  readonly devices = new Map<number, ContentDevice>();
  readonly zero: boolean;
  readonly discardMode: 'passdown' | 'nopassdown' | 'ignore';

  constructor(readonly chunkBytes: number, opts: ModelOptions = {}) {
    this.zero = opts.zero ?? true;
    this.discardMode = opts.discard ?? 'passdown';
  }

  ids(): number[] {
    return [...this.devices.keys()].sort((a, b) => a - b);
  }

  has(id: number): boolean {
    return this.devices.has(id);
  }

  size(id: number): number {
    return this.dev(id).size;
  }

  /** Change a device's size (content past the old end reads as zeros). */
  setSize(id: number, size: number): void {
    const d = this.dev(id);
    for (const [v, c] of d.chunks) {
      if (v * this.chunkBytes >= size) {
        c.refs--;
        d.chunks.delete(v);
      }
    }
    d.size = size;
  }

  createThin(id: number, size: number): void {
    assert.ok(!this.devices.has(id), `model: device ${id} exists`);
    this.devices.set(id, { size, chunks: new Map() });
  }

  createSnap(id: number, origin: number, size?: number): void {
    assert.ok(!this.devices.has(id), `model: device ${id} exists`);
    const o = this.dev(origin);
    const chunks = new Map<number, ModelChunk>();
    for (const [v, c] of o.chunks) {
      c.refs++;
      chunks.set(v, c);
    }
    this.devices.set(id, { size: size ?? o.size, chunks });
  }

  deleteDevice(id: number): void {
    const d = this.dev(id);
    for (const c of d.chunks.values()) c.refs--;
    this.devices.delete(id);
  }

  write(id: number, offset: number, data: Uint8Array): void {
    for (const p of this.pieces(id, offset, data.length)) this.writePiece(id, p.v, p.off, data.subarray(p.at, p.at + p.len));
  }

  discard(id: number, offset: number, length: number): void {
    const d = this.dev(id);
    if (this.discardMode === 'ignore') return;
    for (const p of this.pieces(id, offset, length)) {
      if (p.len === this.chunkBytes) {
        const c = d.chunks.get(p.v);
        if (c) {
          c.refs--;
          d.chunks.delete(p.v);
        }
      } else if (d.chunks.has(p.v)) {
        this.writePiece(id, p.v, p.off, new Uint8Array(p.len));
      }
    }
  }

  read(id: number, offset: number, length: number): Expected {
    const d = this.dev(id);
    const data = Buffer.alloc(length);
    let defined: Uint8Array | undefined;
    for (const p of this.pieces(id, offset, length)) {
      const c = d.chunks.get(p.v);
      if (!c) continue;
      data.set(c.data.subarray(p.off, p.off + p.len), p.at);
      if (c.defined) {
        if (!defined) defined = new Uint8Array(length).fill(1);
        defined.set(c.defined.subarray(p.off, p.off + p.len), p.at);
      }
    }
    return { data, defined };
  }

  chunk(id: number, v: number): ModelChunk | undefined {
    return this.dev(id).chunks.get(v);
  }

  /** Mapped virtual chunks of `id`, ascending. */
  mapped(id: number): number[] {
    return [...this.dev(id).chunks.keys()].sort((a, b) => a - b);
  }

  /** Distinct data blocks in use (shared chunks count once). */
  usedBlocks(): number {
    const seen = new Set<ModelChunk>();
    for (const d of this.devices.values()) for (const c of d.chunks.values()) seen.add(c);
    return seen.size;
  }

  /** A deep copy (sharing between devices preserved), e.g. the state at a commit. */
  clone(): ContentModel {
    const m = new ContentModel(this.chunkBytes, { zero: this.zero, discard: this.discardMode });
    const copies = new Map<ModelChunk, ModelChunk>();
    for (const [id, d] of this.devices) {
      const chunks = new Map<number, ModelChunk>();
      for (const [v, c] of d.chunks) {
        let k = copies.get(c);
        if (!k) {
          k = { data: Buffer.from(c.data), defined: c.defined && new Uint8Array(c.defined), refs: c.refs };
          copies.set(c, k);
        }
        chunks.set(v, k);
      }
      m.devices.set(id, { size: d.size, chunks });
    }
    return m;
  }

  /** Replace chunk `v` of `id` by what was actually read (used after a crash for chunks whose fate is open). */
  adopt(id: number, v: number, bytes: Buffer | undefined): void {
    const d = this.dev(id);
    const old = d.chunks.get(v);
    if (old) old.refs--;
    if (bytes === undefined) d.chunks.delete(v);
    else d.chunks.set(v, { data: Buffer.from(bytes), refs: 1 });
  }

  private writePiece(id: number, v: number, off: number, bytes: Uint8Array): void {
    const d = this.dev(id);
    const cb = this.chunkBytes;
    let c = d.chunks.get(v);
    if (!c) {
      const full = off === 0 && bytes.length === cb;
      c = { data: Buffer.alloc(cb), refs: 1, defined: this.zero || full ? undefined : new Uint8Array(cb) };
      d.chunks.set(v, c);
    } else if (c.refs > 1) {
      c.refs--;
      c = { data: Buffer.from(c.data), defined: c.defined && new Uint8Array(c.defined), refs: 1 };
      d.chunks.set(v, c);
    }
    c.data.set(bytes, off);
    if (c.defined) {
      c.defined.fill(1, off, off + bytes.length);
      if (c.defined.every((x) => x === 1)) c.defined = undefined;
    }
  }

  private dev(id: number): ContentDevice {
    const d = this.devices.get(id);
    if (!d) throw new Error(`model: no device ${id}`);
    return d;
  }

  private pieces(id: number, offset: number, length: number): Array<{ v: number; off: number; len: number; at: number }> {
    const size = this.dev(id).size;
    assert.ok(offset >= 0 && offset + length <= size, `model: range ${offset}+${length} outside device ${id} (${size})`);
    const out = [];
    const cb = this.chunkBytes;
    for (let pos = offset; pos < offset + length;) {
      const v = Math.floor(pos / cb);
      const off = pos - v * cb;
      const len = Math.min(cb - off, offset + length - pos);
      out.push({ v, off, len, at: pos - offset });
      pos += len;
    }
    return out;
  }
}

// ------------------------------------------------------------------------------ comparing

/** Throw naming the first byte where `actual` differs from `exp` (only defined bytes count). */
export function assertBytesMatch(actual: Uint8Array, exp: Expected, what: string, base = 0): void {
  assert.equal(actual.length, exp.data.length, `${what}: length`);
  if (!exp.defined) {
    if (Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.length), exp.data) === 0) return;
  }
  for (let i = 0; i < actual.length; i++) {
    if (exp.defined && !exp.defined[i]) continue;
    if (actual[i] !== exp.data[i]) {
      const from = Math.max(0, i - 4);
      const hex = (b: Uint8Array) => Buffer.from(b.subarray(from, from + 16)).toString('hex');
      assert.fail(`${what}: byte ${base + i} differs: expected ${hex(exp.data)} got ${hex(actual)} (from byte ${base + from})`);
    }
  }
}

/** Read every device fully through the pool and compare with the model (content, mapped sectors). */
export async function checkContent(pool: Pool, model: ContentModel, opts: { ids?: number[]; label?: string; step?: number } = {}): Promise<void> {
  const label = opts.label ? `${opts.label}: ` : '';
  if (!opts.ids) assert.deepEqual(pool.devices(), model.ids(), `${label}device ids`);
  const step = opts.step ?? 2 * MiB;
  for (const id of opts.ids ?? model.ids()) {
    const size = model.size(id);
    assert.equal(pool.deviceSize(id), size, `${label}device ${id} size`);
    for (let off = 0; off < size; off += step) {
      const len = Math.min(step, size - off);
      const got = await pool.read(id, off, len);
      assertBytesMatch(got, model.read(id, off, len), `${label}device ${id}`, off);
    }
    const sectorsPerChunk = model.chunkBytes / 512;
    assert.equal(pool.thinStatus(id).mappedSectors, model.mapped(id).length * sectorsPerChunk, `${label}device ${id} mapped sectors (thinStatus)`);
  }
}

export interface VerifyOptions {
  /** Compare usedDataBlocks with the model (default true). */
  used?: boolean;
  /** Close the pool and run the metadata oracles (default true). */
  close?: boolean;
  /** Check the thin_dump mappings and the data file against the model (default true). */
  dump?: boolean;
  label?: string;
}

/** Compare the whole pool with the model, close it, then check the metadata with every oracle. */
export async function verifyPool(t: TestContext, pool: Pool, model: ContentModel, opts: VerifyOptions = {}): Promise<void> {
  await checkContent(pool, model, { label: opts.label });
  if (opts.used ?? true) assert.equal(pool.status().usedDataBlocks, model.usedBlocks(), `${opts.label ?? ''} used data blocks`);
  if (opts.close === false) return;
  const st = pool.status();
  await pool.close();
  metadataOracles(t, st.metadataFile);
  if (opts.dump ?? true) dumpMatchesModel(t, st.metadataFile, st.dataFile, model);
}

// ------------------------------------------------------------------------------ oracles

/** Our checkMetadata must report ok (printing the findings otherwise). */
export function ourCheck(metadataFile: string, label = ''): CheckReport {
  const dev = new FileDevice(metadataFile, { readOnly: true });
  try {
    const r = checkMetadata(dev);
    assert.ok(r.ok, `${label}checkMetadata: ${r.findings.slice(0, 10).map((f) => `${f.severity} ${f.path ?? ''} ${f.message}`).join('; ')}`);
    return r;
  } finally {
    dev.close();
  }
}

/** checkMetadata, thin_check 1.x and thin_check 0.9.0 on a metadata file (not open read-write). */
export function metadataOracles(t: TestContext, metadataFile: string, label = ''): void {
  ourCheck(metadataFile, label);
  for (const [name, tools, reason] of [['thin_check 1.x', tools1x(), () => skipReason.tools1x], ['thin_check 0.9.0', tools09(), () => skipReason.tools09]] as const) {
    if (!tools) {
      skipPart(t, name, reason());
      continue;
    }
    const r = tools.check(metadataFile);
    assert.equal(r.status, 0, `${label}${name} exited ${r.status}: ${(r.stderr + r.stdout).trim().slice(0, 2000)}`);
  }
}

/** thin_dump (1.x, else 0.9.0) of a metadata file, read by parseToolDump; undefined (a skipped part of `t`) when no tool. */
export function thinDump(t: TestContext, metadataFile: string, args: string[] = []): DumpModel | undefined {
  const tools: Tools | undefined = tools1x() ?? tools09();
  if (!tools) {
    skipPart(t, 'thin_dump', `${skipReason.tools1x}; ${skipReason.tools09}`);
    return undefined;
  }
  const r = tools.dump(metadataFile, args);
  assert.equal(r.status, 0, `thin_dump ${args.join(' ')} (${tools.version}) exited ${r.status}: ${r.stderr.trim()}`);
  return parseToolDump(r.stdout);
}

/**
 * thin_dump's mappings must be the model's: the same mapped chunks per device, one data block
 * per ModelChunk (shared exactly where the model shares), and the data file holding the
 * model's bytes at block * chunk.
 */
export function dumpMatchesModel(t: TestContext, metadataFile: string, dataFile: string, model: ContentModel): void {
  const d = thinDump(t, metadataFile);
  if (!d) return;
  assert.deepEqual(dumpIds(d), model.ids(), 'thin_dump device ids');
  const blockOf = new Map<ModelChunk, number>();
  const chunkOf = new Map<number, ModelChunk>();
  const fd = fs.openSync(dataFile, 'r');
  const buf = Buffer.alloc(model.chunkBytes);
  try {
    for (const id of model.ids()) {
      const dev: DumpDevice = d.devices.find((x) => x.info.devId === id)!;
      const map: Map<number, number> = blockMap(d, id)!;
      assert.deepEqual([...map.keys()].sort((a, b) => a - b), model.mapped(id), `thin_dump: mapped chunks of device ${id}`);
      assert.equal(dev.info.mappedBlocks, map.size, `thin_dump: mapped_blocks of device ${id}`);
      for (const [v, b] of map) {
        const c = model.chunk(id, v)!;
        const known = blockOf.get(c);
        if (known === undefined) {
          const other = chunkOf.get(b);
          assert.ok(other === undefined, `thin_dump: data block ${b} is mapped by device ${id} chunk ${v} and by an unrelated chunk`);
          blockOf.set(c, b);
          chunkOf.set(b, c);
          const n = fs.readSync(fd, buf, 0, buf.length, b * model.chunkBytes);
          buf.fill(0, n);
          assertBytesMatch(buf, { data: c.data, defined: c.defined }, `data file block ${b} (device ${id} chunk ${v})`);
        } else {
          assert.equal(b, known, `thin_dump: device ${id} chunk ${v} should share data block ${known}`);
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

// ------------------------------------------------------------------------------ test plumbing

/** A fresh temporary directory removed when the test ends. */
export function tempDir(t: TestContext, prefix = 'thinsim-pool-'): string {
  const dir = tmpdir(prefix);
  t.after(() => dir.cleanup());
  return dir.path;
}

/**
 * The error a request fails with (fails if it succeeds). Takes the promise, or a thunk making it:
 * a thunk that throws synchronously counts too (the sync-vs-async contract has its own test).
 */
export async function rejection(p: Promise<unknown> | (() => Promise<unknown>)): Promise<Error & { code?: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as Error & { code?: string };
  }
  assert.fail('expected the request to fail');
}

/** Visible oracle availability, one test each, for the top of a suite. */
export function oracleAvailability(test: (name: string, opts: { skip: string | false }, fn: () => void) => unknown): void {
  test('oracle: thin_check 1.x available', { skip: tools1x() ? false : skipReason.tools1x }, () => undefined);
  test('oracle: thin_check 0.9.0 available', { skip: tools09() ? false : skipReason.tools09 }, () => undefined);
}
