/**
 * Corruption: a pool with several devices, snapshots (shared subtrees, data counts of 3 and
 * more, a metadata count of 3 and more), a multi-level mapping tree and a held metadata
 * snapshot is damaged one block at a time, for every kind of block:
 *  - random bytes flipped, checksum left stale;
 *  - logical damage with the checksum recomputed (saltedValidator.prepare): wrong counts, keys
 *    out of order, a mapping past the data device, a mapping time after the pool time, wrong
 *    mapped_blocks, a device missing from either tree, bad superblock fields, overflow tree
 *    entries, parent keys, and the other rules of spec §12's last paragraph.
 * For each: checkMetadata never throws and reports an error naming the block or the path; the
 * CLI's check exits 1; dump and ls either succeed with the right data for every undamaged
 * device or fail with a one-line ThinError (non-zero exit, no stack trace, no hang). The verdict
 * of thin_check 1.x is compared where it is available: whatever it catches we catch.
 *
 * Blocks are found with a small decoder written here from the spec, independent of src/.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { MemoryDevice } from '../../src/io/memory-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { checkMetadata, type Finding } from '../../src/thin/check';
import { saltedValidator } from '../../src/pdata/block-manager';
import { Rand } from '../../support/random';
import { ok, pdataTools, skipPart, skipReason, tmpdir, tools09, tools1x, type Tools } from '../helpers/oracle';
import { PoolModel } from '../helpers/metadata-model';
import { Workload } from '../helpers/workload';
import { runAsync, thinsim, thinsimAsync } from '../helpers/cli';

const BS = 4096;
const MiB = 1024 * 1024;
const SALT = { superblock: 160774, node: 121107, bitmap: 240779, index: 160478 } as const;
type SaltKind = keyof typeof SALT;

// ------------------------------------------------------------------------------ raw decoder

class Img {
  constructor(readonly buf: Buffer) {}
  get nrBlocks(): number { return this.buf.length / BS; }
  blk(b: number): Buffer { return this.buf.subarray(b * BS, (b + 1) * BS); }
  u32(b: number, o: number): number { return this.buf.readUInt32LE(b * BS + o); }
  u64(b: number, o: number): number { return Number(this.buf.readBigUInt64LE(b * BS + o)); }
  set32(b: number, o: number, v: number): void { this.buf.writeUInt32LE(v >>> 0, b * BS + o); }
  set64(b: number, o: number, v: number): void { this.buf.writeBigUInt64LE(BigInt(v), b * BS + o); }
  /** Recompute the checksum of `b` for its kind, keeping the blocknr it holds (the damage may have changed it). */
  restamp(b: number, kind: SaltKind): void {
    const data = new Uint8Array(this.buf.buffer, this.buf.byteOffset + b * BS, BS);
    saltedValidator(kind, SALT[kind]).prepare(data, this.u64(b, 8));
  }
  // superblock
  get time(): number { return this.u32(0, 0x2c); }
  get heldRoot(): number { return this.u64(0, 0x38); }
  get dataNrBlocks(): number { return this.u64(0, 0x40); }
  get dataIndexRoot(): number { return this.u64(0, 0x50); }
  get dataRefRoot(): number { return this.u64(0, 0x58); }
  get metaIndexBlock(): number { return this.u64(0, 0xd0); }
  get metaRefRoot(): number { return this.u64(0, 0xd8); }
  get mappingRoot(): number { return this.u64(0, 0x140); }
  get detailsRoot(): number { return this.u64(0, 0x148); }
  // nodes
  isLeaf(b: number): boolean { return this.u32(b, 4) === 2; }
  nr(b: number): number { return this.u32(b, 16); }
  max(b: number): number { return this.u32(b, 20); }
  vsize(b: number): number { return this.u32(b, 24); }
  key(b: number, i: number): number { return this.u64(b, 32 + 8 * i); }
  valOff(b: number, i: number): number { return 32 + 8 * this.max(b) + this.vsize(b) * i; }
  child(b: number, i: number): number { return this.u64(b, this.valOff(b, i)); }
  /** Every node of the tree at `root`, with its depth. */
  nodes(root: number): { block: number; depth: number; leaf: boolean }[] {
    const out: { block: number; depth: number; leaf: boolean }[] = [];
    const go = (b: number, depth: number) => {
      const leaf = this.isLeaf(b);
      out.push({ block: b, depth, leaf });
      if (!leaf) for (let i = 0; i < this.nr(b); i++) go(this.child(b, i), depth + 1);
    };
    go(root, 0);
    return out;
  }
  /** Leaf entries (key, raw value offset) of a tree. */
  leafEntries(root: number): { leaf: number; i: number; key: number }[] {
    const out: { leaf: number; i: number; key: number }[] = [];
    for (const n of this.nodes(root)) if (n.leaf) for (let i = 0; i < this.nr(n.block); i++) out.push({ leaf: n.block, i, key: this.key(n.block, i) });
    return out;
  }
  /** device id -> subtree root, from the live top-level tree. */
  deviceRoots(): Map<number, number> {
    const m = new Map<number, number>();
    for (const e of this.leafEntries(this.mappingRoot)) m.set(e.key, this.child(e.leaf, e.i));
    return m;
  }
  /** Devices whose live mapping subtree contains block `b`. */
  devicesReaching(b: number): number[] {
    const out: number[] = [];
    for (const [dev, root] of this.deviceRoots()) if (this.nodes(root).some((n) => n.block === b)) out.push(dev);
    return out;
  }
  // bitmaps (2 bits per entry, high bit first: spec §6.1)
  bitmapGet(b: number, i: number): number {
    const byte = this.buf[b * BS + 16 + (i >> 2)];
    const s = (i & 3) * 2;
    return (((byte >> s) & 1) << 1) | ((byte >> (s + 1)) & 1);
  }
  bitmapSet(b: number, i: number, c: number): void {
    const at = b * BS + 16 + (i >> 2);
    const s = (i & 3) * 2;
    this.buf[at] = (this.buf[at] & ~(3 << s)) | (((c >> 1) & 1) << s) | ((c & 1) << (s + 1));
  }
  /** Block of data bitmap 0 (first entry of the data index tree). */
  get dataBitmap0(): number {
    const e = this.leafEntries(this.dataIndexRoot)[0];
    return this.u64(e.leaf, this.valOff(e.leaf, e.i));
  }
  get metaBitmap0(): number { return this.u64(this.metaIndexBlock, 16); }
  /** Remove entry i from a node (shift the rest left). */
  deleteEntry(b: number, i: number): void {
    const n = this.nr(b);
    const base = b * BS;
    this.buf.copy(this.buf, base + 32 + 8 * i, base + 32 + 8 * (i + 1), base + 32 + 8 * n);
    this.buf.copy(this.buf, base + this.valOff(b, i), base + this.valOff(b, i + 1), base + this.valOff(b, n));
    this.set32(b, 16, n - 1);
  }
}

// ------------------------------------------------------------------------------ the pool

interface Pool {
  image: Buffer;
  /** Devices in the pool, and which ones have interesting shapes. */
  devices: number[];
  bigDev: number;
  dump: string;
  ls: string;
}

const LS_ARGS = ['-o', 'DEV,MAPPED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME', '--no-headers'];

function buildPool(dir: string): Pool {
  const dev = new MemoryDevice(8 * MiB);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 20000 });
  const model = new PoolModel(128, 20000);
  const w = new Workload(md, model, new Rand(31337), () => md);
  const thin = (id: number) => { md.createThin(id); model.createThin(id); };
  const snap = (id: number, o: number) => { md.createSnap(id, o); model.createSnap(id, o); };
  thin(0);
  for (let v = 0; v < 3000; v++) w.write(0, v); // multi-level subtree
  w.commit();
  snap(1, 0);
  snap(2, 0);
  w.commit();
  // Writes to the same leaf of 0, 1 and 2: that leaf's blocks reach data count 3 (overflow tree).
  for (let v = 10; v < 14; v++) w.write(1, v);
  for (let v = 20; v < 24; v++) w.write(2, v);
  for (let v = 30; v < 34; v++) w.write(0, v);
  thin(3);
  for (let v = 0; v < 100; v++) w.write(3, v * 3);
  snap(4, 3);
  for (let v = 0; v < 10; v++) w.write(4, 1000 + v);
  // Three devices sharing one subtree root: metadata count 3 (metadata overflow tree).
  snap(5, 4);
  snap(6, 4);
  thin(7);
  md.setTransactionId(0, 5);
  w.commit();
  md.reserveMetadataSnap();
  md.commit();
  const image = Buffer.from(dev.image());
  const rep = checkMetadata(MemoryDevice.from(image));
  assert.deepEqual(rep.findings.filter((f) => f.severity === 'error'), [], 'the pristine pool checks clean');
  const file = `${dir}/pristine.bin`;
  fs.writeFileSync(file, image);
  const dump = thinsim(['dump', file]);
  const ls = thinsim(['ls', file, ...LS_ARGS]);
  assert.equal(dump.status, 0, dump.stderr);
  assert.equal(ls.status, 0, ls.stderr);
  return { image, devices: model.deviceIds(), bigDev: 0, dump: dump.stdout, ls: ls.stdout };
}

// ------------------------------------------------------------------------------ verdicts

interface Case {
  name: string;
  /** Damage a copy of the image; returns the block damaged (for messages). */
  damage(img: Img, r: Rand): void;
  /** Does a finding report this damage at the right place? */
  expect(f: Finding, img: Img): boolean;
  /** Devices whose dump may legitimately differ (undefined: derive from the damaged block). */
  damaged?: (img: Img) => number[];
  /** Checksum stale: a successful dump must then be entirely right. */
  stale?: boolean;
}

function deviceSections(dump: string): Map<string, string> {
  const m = new Map<string, string>();
  const re = /^ {2}<device dev_id="(\d+)"[^\n]*\n(?:(?! {2}<\/device>)[^\n]*\n)* {2}<\/device>\n/gm;
  for (const x of dump.matchAll(re)) m.set(x[1], x[0]);
  return m;
}

function lsRows(ls: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of ls.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[0]) m.set(cols[0], cols.join(' '));
  }
  return m;
}

const verdicts: string[] = [];

async function runCase(pool: Pool, dir: string, c: Case, seed: number, t1: Tools | undefined): Promise<void> {
  const img = new Img(Buffer.from(pool.image));
  const r = new Rand(seed);
  c.damage(img, r);
  assert.ok(!img.buf.equals(pool.image), `${c.name}: the damage changed something`);
  const what = `${c.name} (seed ${seed})`;

  // 1. The checker: no throw, at least one error at the right place.
  let rep;
  try {
    rep = checkMetadata(MemoryDevice.from(img.buf));
  } catch (e) {
    assert.fail(`${what}: checkMetadata threw ${(e as Error).stack}`);
  }
  const errs = rep.findings.filter((f) => f.severity === 'error');
  assert.equal(rep.ok, false, `${what}: checkMetadata must report the damage`);
  assert.ok(errs.some((f) => c.expect(f, img)), `${what}: no error names the damaged place; findings:\n  ${errs.map((f) => `${f.message} [${f.path ?? ''}${f.block !== undefined ? ` block ${f.block}` : ''}]`).join('\n  ')}`);

  const file = `${dir}/case-${seed}.bin`;
  fs.writeFileSync(file, img.buf);
  try {
    // The three CLI runs and thin_check 1.x overlap (1.x's thin_check idles 0.5 s in its progress thread).
    const [chk, dump, ls, one] = await Promise.all([
      thinsimAsync(['check', file], { timeoutMs: 30_000 }),
      thinsimAsync(['dump', file], { timeoutMs: 30_000 }),
      thinsimAsync(['ls', file, ...LS_ARGS], { timeoutMs: 30_000 }),
      t1 ? runAsync(pdataTools(), ['thin_check', file], { timeoutMs: 60_000 }) : undefined,
    ]);
    // 3. thin_check 1.x: whatever it catches, we caught (we must catch everything here anyway).
    if (one) verdicts.push(`${c.name}: thin_check 1.x ${one.status === 0 ? 'MISSES it' : `exit ${one.status}`}; thinsim: ${errs[0]?.message.slice(0, 90)}`);

    // 2. The CLI check exits 1.
    assert.ok(!chk.timedOut, `${what}: check hangs`);
    assert.equal(chk.status, 1, `${what}: thinsim check exit status\n${chk.stderr}`);
    assert.doesNotMatch(chk.stderr, /internal error|\n\s+at /, `${what}: check prints no stack trace`);

    // 4. dump and ls: right data for undamaged devices, or a clean failure.
    const damagedDevs = new Set((c.damaged ? c.damaged(img) : []).map(String));
    for (const [verb, res, pristine, split] of [
      ['dump', dump, pool.dump, deviceSections],
      ['ls', ls, pool.ls, lsRows],
    ] as const) {
      assert.ok(!res.timedOut, `${what}: ${verb} hangs`);
      if (res.status === 0) {
        const got = split(res.stdout);
        const want = split(pristine);
        for (const [dev, section] of want) {
          if (damagedDevs.has(dev) && !c.stale) continue;
          assert.equal(got.get(dev), section, `${what}: ${verb} succeeded but device ${dev} ${damagedDevs.has(dev) ? '(behind a block with a bad checksum) ' : ''}is wrong`);
        }
      } else {
        assert.notEqual(res.status, null, `${what}: ${verb} killed by a signal`);
        assert.match(res.stderr, /^thinsim: .+ \[E_[A-Z_]+\]\n$/, `${what}: ${verb} fails with one ThinError line, got:\n${res.stderr}`);
      }
    }
  } finally {
    fs.rmSync(file, { force: true });
  }
}

// ------------------------------------------------------------------------------ the cases

const names = (b: (img: Img) => number) => (f: Finding, img: Img) => f.block === b(img) || f.message.includes(`block ${b(img)})`) || f.message.includes(`(block ${b(img)}`);

/** Where each kind of block lives in the pool. */
const KINDS: { kind: string; salt: SaltKind; at: (img: Img) => number }[] = [
  { kind: 'superblock', salt: 'superblock', at: () => 0 },
  { kind: 'metadata index block', salt: 'index', at: (i) => i.metaIndexBlock },
  { kind: 'metadata bitmap', salt: 'bitmap', at: (i) => i.metaBitmap0 },
  { kind: 'data bitmap', salt: 'bitmap', at: (i) => i.dataBitmap0 },
  { kind: 'data index tree node', salt: 'node', at: (i) => i.dataIndexRoot },
  { kind: 'data overflow tree node', salt: 'node', at: (i) => i.dataRefRoot },
  { kind: 'metadata overflow tree node', salt: 'node', at: (i) => i.metaRefRoot },
  { kind: 'details leaf', salt: 'node', at: (i) => i.detailsRoot },
  { kind: 'top-level mapping node', salt: 'node', at: (i) => i.mappingRoot },
  { kind: 'bottom internal node', salt: 'node', at: (i) => i.deviceRoots().get(0)! },
  { kind: 'bottom leaf', salt: 'node', at: (i) => i.nodes(i.deviceRoots().get(0)!).filter((n) => n.leaf)[3].block },
  { kind: 'metadata snapshot copy', salt: 'superblock', at: (i) => i.heldRoot },
];

function flipCases(): Case[] {
  return KINDS.map(({ kind, at }) => ({
    name: `random bytes in the ${kind}, checksum stale`,
    stale: true,
    damage(img, r) {
      const b = at(img);
      const n = r.range(1, 4);
      for (let k = 0; k < n; k++) img.buf[b * BS + r.int(BS)] ^= r.range(1, 255);
    },
    expect: names(at),
    damaged: (img) => img.devicesReaching(at(img)),
  }));
}

/** Damage, then recompute the checksum so only the logic can tell. */
function logical(name: string, block: (img: Img) => number, salt: SaltKind, edit: (img: Img, b: number, r: Rand) => void,
  expect: (f: Finding, img: Img) => boolean, damaged?: (img: Img) => number[]): Case {
  return {
    name: `${name} (checksum fixed)`,
    damage(img, r) {
      const b = block(img);
      edit(img, b, r);
      img.restamp(b, salt);
    },
    expect,
    damaged,
  };
}

const bottomLeaf = (img: Img) => img.nodes(img.deviceRoots().get(3)!).filter((n) => n.leaf)[0].block;
const reachingLeaf = (img: Img) => img.devicesReaching(bottomLeaf(img));
const msg = (re: RegExp, path?: RegExp) => (f: Finding) => re.test(f.message) && (!path || path.test(f.path ?? ''));

function logicalCases(): Case[] {
  return [
    // Space maps.
    logical('data bitmap: a mapped block counted 2 too many', (i) => i.dataBitmap0, 'bitmap',
      (img, b) => img.bitmapSet(b, 5, img.bitmapGet(b, 5) === 1 ? 2 : 1), msg(/data block 5 is (over|under)-counted/, /data space map/)),
    logical('data bitmap: a mapped block marked free', (i) => i.dataBitmap0, 'bitmap',
      (img, b) => img.bitmapSet(b, 6, 0), msg(/data block 6 is in use but marked free/, /data space map/)),
    logical('data bitmap: a free block marked used (leak)', (i) => i.dataBitmap0, 'bitmap',
      (img, b) => img.bitmapSet(b, 15000, 1), msg(/data block 15000 is leaked/, /data space map/)),
    logical('metadata bitmap: a free block marked used', (i) => i.metaBitmap0, 'bitmap',
      (img, b) => img.bitmapSet(b, 2000, 1), msg(/metadata block 2000 is leaked/, /metadata space map/)),
    logical('metadata bitmap: a tree node marked free', (i) => i.metaBitmap0, 'bitmap',
      (img, b) => img.bitmapSet(b, img.detailsRoot, 0), (f, img) => f.message.includes(`metadata block ${img.detailsRoot} is in use but marked free`)),
    logical('data nr_allocated one too high', () => 0, 'superblock',
      (img) => img.set64(0, 0x48, img.u64(0, 0x48) + 1), msg(/nr_allocated/, /data space map/)),
    logical('metadata nr_allocated one too low', () => 0, 'superblock',
      (img) => img.set64(0, 0xc8, img.u64(0, 0xc8) - 1), msg(/nr_allocated/, /metadata space map/)),
    logical('data overflow tree: an entry removed (bitmap says 3+)', (i) => i.dataRefRoot, 'node',
      (img, b) => img.deleteEntry(b, 0), msg(/count 3\+ in its bitmap but no entry/, /data space map/)),
    logical('data overflow tree: a count raised by one', (i) => i.dataRefRoot, 'node',
      (img, b) => img.set32(b, img.valOff(b, 0), img.u32(b, img.valOff(b, 0)) + 1), msg(/over-counted/, /data space map/)),
    logical('metadata overflow tree: a count lowered to 2', (i) => i.metaRefRoot, 'node',
      (img, b) => img.set32(b, img.valOff(b, 0), 2), msg(/only counts of 3 or more|under-counted|count 2/)),
    // Mapping trees.
    logical('bottom leaf: keys out of order', bottomLeaf, 'node', (img, b) => {
      const k0 = img.key(b, 0);
      img.set64(b, 32, img.key(b, 1));
      img.set64(b, 40, k0);
    }, (f, img) => f.block === bottomLeaf(img) || (f.path ?? '').includes(`block ${bottomLeaf(img)}`), reachingLeaf),
    logical('bottom leaf: a mapping past the data device', bottomLeaf, 'node', (img, b) => {
      const o = img.valOff(b, 2);
      const time = img.u32(b, o) & 0xffffff;
      const v = BigInt(img.dataNrBlocks + 5) << 24n | BigInt(time);
      img.buf.writeBigUInt64LE(v, b * BS + o);
    }, (f, img) => f.message.includes(`data block ${img.dataNrBlocks + 5}`), reachingLeaf),
    logical('bottom leaf: a mapping time after the pool time', bottomLeaf, 'node', (img, b) => {
      const o = img.valOff(b, 1);
      const lo = img.u32(b, o);
      img.set32(b, o, ((lo & 0xff000000) | (img.time + 1)) >>> 0);
    }, (f, img) => /after the pool time/.test(f.message) && (f.block === bottomLeaf(img) || (f.path ?? '').includes(`block ${bottomLeaf(img)}`)), reachingLeaf),
    logical('bottom internal node: parent key above the child first key', (i) => i.deviceRoots().get(0)!, 'node',
      (img, b) => img.set64(b, 32 + 8, img.key(b, 1) + 1),
      (f, img) => /below its parent's key/.test(f.message) && f.block === img.child(img.deviceRoots().get(0)!, 1), () => [0, 1, 2]),
    logical('bottom internal node: a child pointer to a leaf of another device', (i) => i.deviceRoots().get(0)!, 'node',
      (img, b) => img.set64(b, img.valOff(b, 1), bottomLeaf(img)),
      (f) => /reference count|references found|key|below|entries/.test(f.message), () => [0, 1, 2]),
    logical('top-level tree: a device removed (details remain)', (i) => i.mappingRoot, 'node',
      (img, b) => img.deleteEntry(b, img.leafEntries(b).findIndex((e) => e.key === 3)),
      msg(/device 3 is in the details tree but not in the mapping tree/), () => [3]),
    logical('details tree: wrong mapped_blocks', (i) => i.detailsRoot, 'node', (img, b) => {
      const i = img.leafEntries(b).findIndex((e) => e.key === 3);
      img.set64(b, img.valOff(b, i), img.u64(b, img.valOff(b, i)) + 1);
    }, (f) => /device 3 has mapped_blocks 101/.test(f.message) && /details tree > device 3/.test(f.path ?? ''), () => [3]),
    logical('details tree: a device missing', (i) => i.detailsRoot, 'node',
      (img, b) => img.deleteEntry(b, img.leafEntries(b).findIndex((e) => e.key === 4)),
      msg(/device 4 is in the mapping tree but has no details/), () => [4]),
    logical('details tree: creation time after the pool time', (i) => i.detailsRoot, 'node', (img, b) => {
      const i = img.leafEntries(b).findIndex((e) => e.key === 7);
      img.set32(b, img.valOff(b, i) + 16, img.time + 3);
    }, msg(/device 7 .*after the pool time/), () => [7]),
    // Superblock fields (spec §12).
    logical('superblock: wrong magic', () => 0, 'superblock', (img) => img.set64(0, 0x20, 12345), (f) => f.block === 0 && /magic/.test(f.message)),
    logical('superblock: version 3', () => 0, 'superblock', (img) => img.set32(0, 0x28, 3), (f) => f.block === 0 && /version/.test(f.message)),
    logical('superblock: blocknr 1', () => 0, 'superblock', (img) => img.set64(0, 8, 1), (f) => f.block === 0 && /block nr|blocknr/.test(f.message)),
    logical('superblock: incompat_flags 1', () => 0, 'superblock', (img) => img.set32(0, 0x168, 1), (f) => f.block === 0 && /incompat/.test(f.message)),
    logical('superblock: compat_ro_flags 1', () => 0, 'superblock', (img) => img.set32(0, 0x164, 1), (f) => f.block === 0 && /compat_ro/.test(f.message)),
    logical('superblock: data nr_blocks below the highest mapped block', () => 0, 'superblock',
      (img) => img.set64(0, 0x40, 100), (f) => /beyond the data device/.test(f.message)),
    logical('superblock: held_root past the device', () => 0, 'superblock',
      (img) => img.set64(0, 0x38, img.nrBlocks + 10), (f) => f.block === 0 && /held_root/.test(f.message)),
    logical('metadata snapshot copy: mapping root points at the details tree', (i) => i.heldRoot, 'superblock',
      (img, b) => img.set64(b, 0x140, img.detailsRoot),
      (f) => /metadata snapshot/.test(f.path ?? '')),
  ];
}

// ------------------------------------------------------------------------------ tests

test('corruption of every kind of block is reported, never crashes, never gives wrong data', async (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const pool = buildPool(dir.path);
  const t1 = tools1x();
  const t09 = tools09();
  if (!t1) skipPart(t, 'thin_check 1.x comparison', skipReason.tools1x);
  // The pristine pool is clean for the real tools too, and has every kind of block we damage.
  const img = new Img(pool.image);
  if (t1) ok(t1.check(`${dir.path}/pristine.bin`), 'thin_check 1.x on the pristine pool');
  if (t09) ok(t09.check(`${dir.path}/pristine.bin`), 'thin_check 0.9.0 on the pristine pool');
  else skipPart(t, 'thin_check 0.9.0 on the pristine pool', skipReason.tools09);
  assert.equal(img.isLeaf(img.deviceRoots().get(0)!), false, 'device 0 has an internal root');
  assert.ok(img.nr(img.dataRefRoot) > 0, 'the data overflow tree has entries (counts >= 3)');
  assert.ok(img.nr(img.metaRefRoot) > 0, 'the metadata overflow tree has entries (counts >= 3)');
  assert.ok(img.heldRoot > 0, 'a metadata snapshot is held');

  const twice = /bottom leaf|snapshot copy/;
  for (const [i, c] of flipCases().entries()) {
    for (const seed of twice.test(c.name) ? [1, 2] : [1]) await t.test(`${c.name} #${seed}`, () => runCase(pool, dir.path, c, 1000 * i + seed, t1));
  }
  for (const [i, c] of logicalCases().entries()) {
    await t.test(c.name, () => runCase(pool, dir.path, c, 50000 + i, t1));
  }
  for (const v of verdicts) t.diagnostic(v);
});

test('a tree node reached as two different kinds of tree is reported', () => {
  // The held snapshot copy's mapping root is pointed at the live details tree root. That node
  // was already checked as a details leaf (value_size 24); as a top-level mapping node it must
  // have value_size 8. A checker that remembers visited blocks without their tree kind misses it.
  const dev = new MemoryDevice(4 * MiB);
  const md = ThinMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 1000 });
  md.createThin(1);
  md.insertMapping(1, 0, md.allocateDataBlock());
  md.reserveMetadataSnap();
  const img = new Img(Buffer.from(dev.image()));
  img.set64(img.heldRoot, 0x140, img.detailsRoot);
  img.restamp(img.heldRoot, 'superblock');
  const rep = checkMetadata(MemoryDevice.from(img.buf));
  const errs = rep.findings.filter((f) => f.severity === 'error');
  assert.ok(errs.some((f) => /value_size 24|reached both as a node of the device details tree and of the mapping tree/.test(f.message) && /metadata snapshot/.test(f.path ?? '')),
    `expected a finding on the metadata snapshot's mapping tree naming the mix-up; got:\n  ${errs.map((f) => `${f.message} [${f.path}]`).join('\n  ')}`);
});

test('metadata files that are not metadata at all', (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const cases: [string, Buffer][] = [
    ['empty file', Buffer.alloc(0)],
    ['shorter than a block', Buffer.alloc(1000, 7)],
    ['all zeros', Buffer.alloc(64 * 1024)],
    ['random bytes', Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 2654435761) >>> 24))],
  ];
  for (const [name, bytes] of cases) {
    const file = dir.file(`${name.replace(/ /g, '-')}.bin`);
    fs.writeFileSync(file, bytes);
    const rep = checkMetadata(MemoryDevice.from(new Uint8Array(bytes)));
    assert.equal(rep.ok, false, `${name}: checkMetadata`);
    assert.ok(rep.findings.some((f) => f.severity === 'error'), `${name}: an error is reported`);
    const chk = thinsim(['check', file]);
    assert.equal(chk.status, 1, `${name}: check exit status: ${chk.stderr}`);
    for (const verb of ['dump', 'ls']) {
      const r = thinsim([verb, file], { timeoutMs: 20_000 });
      assert.notEqual(r.status, 0, `${name}: ${verb} must fail`);
      assert.match(r.stderr, /^thinsim: .+ \[E_[A-Z_]+\]\n$/, `${name}: ${verb} prints one ThinError line: ${r.stderr}`);
    }
  }
});
