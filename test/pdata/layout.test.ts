/**
 * The one u64 codec (src/pdata/layout.ts) against BigInt as the model: every way in
 * (bytes, DataView, buffer-layout field) stores exactly what DataView.setBigUint64 would,
 * refuses to write what a number cannot hold exactly (E_RANGE naming the field, nothing
 * written), and refuses to read what is beyond 2^53-1 (E_CORRUPT naming the field).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError } from '../../src/errors';
import { getU64, getU64Unchecked, readU64, setU64, struct, u64, view, writeU64 } from '../../src/pdata/layout';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
}

/** Values across every width: small (the no-division path), around 2^32, up to 2^53-1. */
function samples(): number[] {
  const r = rng(7);
  const out = [0, 1, 255, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 53 - 2, 2 ** 53 - 1];
  for (let i = 0; i < 500; i++) out.push(Math.floor(r() * 2 ** Math.floor(r() * 54)));
  return out;
}

test('u64 stores match BigInt little-endian bytes, and read back exactly, on every path', () => {
  const layout = struct<{ f: number }>([u64('f')]);
  for (const v of samples()) {
    const model = new Uint8Array(16);
    new DataView(model.buffer).setBigUint64(4, BigInt(v), true);
    const a = new Uint8Array(16).fill(0xee);
    setU64(a, 4, v, 'f');
    assert.deepEqual(a.subarray(4, 12), model.subarray(4, 12), `setU64 ${v}`);
    const b = new Uint8Array(16).fill(0xee);
    writeU64(new DataView(b.buffer), 4, v, 'f');
    assert.deepEqual(b.subarray(4, 12), model.subarray(4, 12), `writeU64 ${v}`);
    const c = new Uint8Array(8);
    layout.encode({ f: v }, view(c));
    assert.deepEqual(c, model.subarray(4, 12), `u64 layout ${v}`);
    assert.equal(getU64(model, 4, 'f'), v);
    assert.equal(readU64(new DataView(model.buffer), 4, 'f'), v);
    assert.equal(layout.decode(view(c)).f, v);
    assert.equal(getU64Unchecked(model, 4), v);
  }
});

test('writing a value a u64 number cannot hold exactly is E_RANGE naming the field, and writes nothing', () => {
  const layout = struct<{ mapped_blocks: number }>([u64('mapped_blocks')]);
  for (const v of [-1, -0.5, 0.5, 2 ** 32 + 0.5, 2 ** 53, 2 ** 64, NaN, Infinity, -Infinity]) {
    const named = (e: unknown) => isThinError(e, 'E_RANGE') && /mapped_blocks/.test((e as Error).message);
    const d = new Uint8Array(8).fill(0xab);
    assert.throws(() => setU64(d, 0, v, 'mapped_blocks'), named, `setU64 ${v}`);
    assert.throws(() => writeU64(new DataView(d.buffer), 0, v, 'mapped_blocks'), named, `writeU64 ${v}`);
    assert.throws(() => layout.encode({ mapped_blocks: v }, view(d)), named, `layout ${v}`);
    assert.deepEqual(d, new Uint8Array(8).fill(0xab), `nothing written for ${v}`);
  }
});

test('reading a u64 beyond 2^53-1 is E_CORRUPT naming the field and the exact value', () => {
  const layout = struct<{ held_root: number }>([u64('held_root')]);
  for (const big of [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n]) {
    const d = new Uint8Array(8);
    new DataView(d.buffer).setBigUint64(0, big, true);
    const named = (e: unknown) => isThinError(e, 'E_CORRUPT') && /held_root/.test((e as Error).message) && (e as Error).message.includes(big.toString());
    assert.throws(() => getU64(d, 0, 'held_root'), named);
    assert.throws(() => readU64(new DataView(d.buffer), 0, 'held_root'), named);
    assert.throws(() => layout.decode(view(d)), named);
    // The comparison-only read still orders it above every safe value.
    assert.ok(getU64Unchecked(d, 0) > Number.MAX_SAFE_INTEGER);
  }
});
