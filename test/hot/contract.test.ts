/**
 * Contract: the addon and the TypeScript twin agree with a naive model (and so with each
 * other) on thousands of random inputs: unaligned buffer slices, ranges whose ends are
 * not multiples of 4 or 32, wrap-around and out-of-range cursors, full and empty bitmaps,
 * zero lengths, and junk arguments (same error class and code, or same result).
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { eachImpl, unaligned, SKIP_REASON } from './impls';
import { nativeImpl, twin, type HotPath } from '../../src/hot';

// ---------------------------------------------------------------------------
// Naive models, written straight from spec §6.1 / §2.1

function modelGet(buf: Uint8Array, i: number): number {
  const b = buf[Math.floor(i / 4)];
  const p = 2 * (i % 4);
  return (((b >> p) & 1) << 1) | ((b >> (p + 1)) & 1);
}

function pack(entries: number[]): number[] {
  const bytes = new Array<number>(Math.ceil(entries.length / 4)).fill(0);
  entries.forEach((v, i) => {
    const p = 2 * (i % 4);
    bytes[Math.floor(i / 4)] |= (((v >> 1) & 1) << p) | ((v & 1) << (p + 1));
  });
  return bytes;
}

function modelFindFree(buf: Uint8Array, begin: number, end: number, cursor: number): number {
  const c = cursor < begin || cursor >= end ? begin : cursor;
  for (let i = c; i < end; i++) if (modelGet(buf, i) === 0) return i;
  for (let i = begin; i < c; i++) if (modelGet(buf, i) === 0) return i;
  return -1;
}

function modelCount(buf: Uint8Array, begin: number, end: number): number[] {
  const out = [0, 0, 0, 0];
  for (let i = begin; i < end; i++) out[modelGet(buf, i)]++;
  return out;
}

function modelCrc(buf: Uint8Array, init: number): number {
  let c = init >>> 0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

// ---------------------------------------------------------------------------
// Generators

/** Bitmaps of 0..1200 bytes in several fill styles, at an unaligned offset. */
const bitmapArb = fc
  .record({
    style: fc.constantFrom('random', 'full', 'sparse', 'empty', 'oneFree'),
    entries: fc.integer({ min: 0, max: 4800 }),
    offset: fc.integer({ min: 0, max: 15 }),
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
  })
  .map(({ style, entries, offset, seed }) => {
    let s = seed;
    const rnd = (n: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
      return s % n;
    };
    const n = entries - (entries % 4); // whole bytes
    const e = Array.from({ length: n }, () => {
      switch (style) {
        case 'random': return rnd(4);
        case 'full': return 1 + rnd(3);
        case 'sparse': return rnd(50) === 0 ? 0 : 1 + rnd(3);
        case 'empty': return 0;
        default: return 1 + rnd(3);
      }
    });
    if (style === 'oneFree' && n > 0) e[rnd(n)] = 0;
    return { bytes: pack(e), offset };
  });

/** A bitmap plus begin <= end <= entries and a cursor that may be anywhere. */
const scanArb = bitmapArb.chain((bm) => {
  const n = bm.bytes.length * 4;
  return fc
    .tuple(fc.integer({ min: 0, max: n }), fc.integer({ min: 0, max: n }), fc.oneof(fc.integer({ min: 0, max: n + 40 }), fc.constant(2 ** 40)))
    .map(([a, b, cursor]) => ({ ...bm, begin: Math.min(a, b), end: Math.max(a, b), cursor }));
});

// ---------------------------------------------------------------------------

test('contract: bitmapFindFree matches the model', (t) =>
  eachImpl(t, (impl) => {
    fc.assert(
      fc.property(scanArb, ({ bytes, offset, begin, end, cursor }) => {
        const buf = unaligned(bytes, offset);
        assert.equal(impl.bitmapFindFree(buf, begin, end, cursor), modelFindFree(buf, begin, end, cursor));
      }),
      { numRuns: 3000 },
    );
  }));

test('contract: bitmapCount matches the model', (t) =>
  eachImpl(t, (impl) => {
    fc.assert(
      fc.property(scanArb, ({ bytes, offset, begin, end }) => {
        const buf = unaligned(bytes, offset);
        const out = new Float64Array(5).fill(-1);
        impl.bitmapCount(buf, begin, end, out);
        assert.deepEqual(Array.from(out), [...modelCount(buf, begin, end), -1]);
      }),
      { numRuns: 2000 },
    );
  }));

test('contract: bitmapGet/bitmapSet sequences match the model', (t) =>
  eachImpl(t, (impl) => {
    fc.assert(
      fc.property(
        bitmapArb.filter((b) => b.bytes.length > 0),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 3 })), { maxLength: 40 }),
        ({ bytes, offset }, ops) => {
          const buf = unaligned(bytes, offset);
          const entries = bytes.length * 4;
          const model = Array.from({ length: entries }, (_, i) => modelGet(buf, i));
          for (const [raw, v] of ops) {
            const i = raw % entries;
            impl.bitmapSet(buf, i, v);
            model[i] = v;
            assert.equal(impl.bitmapGet(buf, i), v);
          }
          assert.deepEqual([...buf], pack(model));
        },
      ),
      { numRuns: 1000 },
    );
  }));

test('contract: crc32c and blockChecksum match the bitwise model', (t) =>
  eachImpl(t, (impl) => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.integer({ min: 0, max: 15 }),
        fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (bytes, offset, init, salt) => {
          const buf = unaligned(bytes, offset);
          assert.equal(impl.crc32c(buf, init), modelCrc(buf, init ?? 0xffffffff));
          if (buf.length >= 4) assert.equal(impl.blockChecksum(buf, salt), (modelCrc(buf.subarray(4), 0xffffffff) ^ salt) >>> 0);
        },
      ),
      { numRuns: 2000 },
    );
  }));

test('contract: isZero matches the model', (t) =>
  eachImpl(t, (impl) => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 15 }),
        fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }))),
        (len, offset, poke) => {
          const bytes = new Uint8Array(len);
          if (poke && len > 0) bytes[poke[0] % len] = poke[1];
          const buf = unaligned(bytes, offset);
          assert.equal(impl.isZero(buf), buf.every((b) => b === 0));
        },
      ),
      { numRuns: 2000 },
    );
  }));

// ---------------------------------------------------------------------------
// Junk arguments: the addon throws exactly where the twin throws, the same ThinError code,
// and otherwise returns the same value.

type ArgSpec =
  | { kind: 'value'; value: unknown }
  | { kind: 'u8'; bytes: number[]; offset: number }
  | { kind: 'f64'; n: number }
  | { kind: 'other-view'; ctor: 'Uint16Array' | 'Uint8ClampedArray' | 'Int8Array' | 'DataView' };

const argArb: fc.Arbitrary<ArgSpec> = fc.oneof(
  fc.constantFrom<unknown>(undefined, null, true, 'x', '5', {}, [], -1, -0, 0.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 - 1, 2 ** 32, 2 ** 32 - 1, 2 ** 31, 1e300, 0, 1, 3, 4, 7, 12, 13, 160774, 10n, Symbol.for('s')).map((value) => ({ kind: 'value' as const, value })),
  fc.integer({ min: -3, max: 40 }).map((value) => ({ kind: 'value' as const, value })),
  fc.record({ kind: fc.constant('u8' as const), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 12 }), offset: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('f64' as const), n: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ kind: fc.constant('other-view' as const), ctor: fc.constantFrom('Uint16Array' as const, 'Uint8ClampedArray' as const, 'Int8Array' as const, 'DataView' as const) }),
);

/** Fresh objects per implementation, so a mutation by one cannot leak to the other. */
function materialize(spec: ArgSpec): unknown {
  switch (spec.kind) {
    case 'value': return spec.value;
    case 'u8': return unaligned(spec.bytes, spec.offset);
    case 'f64': return new Float64Array(spec.n);
    case 'other-view': return spec.ctor === 'DataView' ? new DataView(new ArrayBuffer(8)) : new globalThis[spec.ctor](8);
  }
}

type Outcome = { ok: unknown; args: unknown[] } | { err: string; code: unknown };

function outcome(impl: HotPath, fn: string, specs: ArgSpec[]): Outcome {
  const args = specs.map(materialize);
  try {
    const ok = (impl as unknown as Record<string, (...a: unknown[]) => unknown>)[fn](...args);
    // Compare the arguments afterwards too: bitmapSet/bitmapCount write into them.
    return { ok, args: args.map((a) => (ArrayBuffer.isView(a) && !(a instanceof DataView) ? Array.from(a as Uint8Array) : typeof a === 'symbol' ? 'symbol' : a)) };
  } catch (e) {
    return { err: (e as Error).constructor.name, code: (e as { code?: unknown }).code };
  }
}

const PURE_FUNCTIONS = ['bitmapGet', 'bitmapSet', 'bitmapFindFree', 'bitmapCount', 'crc32c', 'blockChecksum', 'isZero', 'leafRuns'];

test('contract: junk arguments give the same result or the same error class and code', async (t) => {
  await t.test('native', (st) => {
    if (nativeImpl === undefined) {
      st.skip(SKIP_REASON);
      return;
    }
    const native = nativeImpl;
    fc.assert(
      fc.property(fc.constantFrom(...PURE_FUNCTIONS), fc.array(argArb, { minLength: 0, maxLength: 5 }), (fn, specs) => {
        const a = outcome(twin, fn, specs);
        const b = outcome(native, fn, specs);
        assert.deepEqual(b, a, `${fn}(${specs.map((s) => JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'symbol' ? 'symbol' : v))).join(', ')})`);
        if ('err' in a) assert.ok(a.err === 'ThinError' && a.code === 'E_INVALID', `unexpected error ${a.err} ${String(a.code)}`);
      }),
      { numRuns: 5000 },
    );
  });
});

// ---------------------------------------------------------------------------
// Chunk I/O on real files

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-hot-contract-'));
}

test('contract: copyRange gives the same bytes, sizes and counts as a model copy', (t) =>
  eachImpl(t, (impl) => {
    const dir = tempDir();
    try {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 300_000 }),
          fc.integer({ min: 0, max: 320_000 }),
          fc.integer({ min: 0, max: 200_000 }),
          fc.integer({ min: 0, max: 300_000 }),
          fc.integer({ min: 0, max: 100_000 }),
          fc.integer(),
          (srcLen, offIn, offOut, len, dstLen, seed) => {
            const src = Buffer.alloc(srcLen);
            for (let i = 0; i < srcLen; i++) src[i] = (i * 31 + seed) & 0xff;
            const dst = Buffer.alloc(dstLen, 0x5a);
            fs.writeFileSync(path.join(dir, 'src'), src);
            fs.writeFileSync(path.join(dir, 'dst'), dst);
            const fin = fs.openSync(path.join(dir, 'src'), 'r');
            const fout = fs.openSync(path.join(dir, 'dst'), 'r+');
            let n: number;
            try {
              n = impl.copyRange(fin, offIn, fout, offOut, len);
            } finally {
              fs.closeSync(fin);
              fs.closeSync(fout);
            }
            const expectN = Math.max(0, Math.min(len, srcLen - offIn));
            assert.equal(n, expectN);
            const expectLen = expectN > 0 ? Math.max(dstLen, offOut + expectN) : dstLen;
            const expect = Buffer.alloc(expectLen);
            dst.copy(expect);
            if (expectN > 0) src.copy(expect, offOut, offIn, offIn + expectN);
            assert.ok(fs.readFileSync(path.join(dir, 'dst')).equals(expect));
          },
        ),
        { numRuns: 150 },
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));

test('contract: zeroRange leaves the same bytes and size as a model', (t) =>
  eachImpl(t, (impl) => {
    const dir = tempDir();
    try {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 400_000 }),
          fc.integer({ min: 0, max: 450_000 }),
          fc.integer({ min: 0, max: 300_000 }),
          fc.boolean(),
          (size, off, len, punch) => {
            const file = path.join(dir, 'z');
            fs.writeFileSync(file, Buffer.alloc(size, 0xee));
            const fd = fs.openSync(file, 'r+');
            let m: number;
            try {
              m = impl.zeroRange(fd, off, len, punch);
            } finally {
              fs.closeSync(fd);
            }
            assert.ok(len === 0 ? m === 0 : [1, 2, 3].includes(m));
            // punch never changes the size; zeroing may grow the file like a write.
            const expectSize = punch || len === 0 ? size : Math.max(size, off + len);
            const expect = Buffer.alloc(expectSize);
            expect.fill(0xee, 0, size);
            expect.fill(0, Math.min(off, expectSize), Math.min(off + len, expectSize));
            assert.ok(fs.readFileSync(file).equals(expect));
          },
        ),
        { numRuns: 120 },
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));
