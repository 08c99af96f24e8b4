/**
 * Loader and misuse: the addon is really in use unless THINSIM_NO_NATIVE=1, and the loader
 * says so (addonState, describeHotPath, requireNative's message); wrong argument types and
 * values throw ThinError E_INVALID from both implementations; a Rust panic becomes a
 * ThinError E_NATIVE and the process keeps running.
 */

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { eachImpl } from './impls';
import { addonState, describeHotPath, hot, nativeImpl, nativeDisabledByEnv, nativeTestHooks, loadError, requireNative, twin, type HotPath } from '../../src/hot';
import { isThinError, ThinError } from '../../src/errors';

test('the native addon is loaded unless THINSIM_NO_NATIVE=1', () => {
  if (nativeDisabledByEnv) {
    assert.equal(hot.native, false);
    assert.equal(nativeImpl, undefined);
    assert.match(hot.loadError ?? '', /THINSIM_NO_NATIVE/);
  } else {
    assert.equal(loadError, undefined, `addon failed to load: ${loadError}`);
    assert.equal(hot.native, true);
    assert.equal(hot, nativeImpl);
    assert.equal(hot.loadError, undefined);
  }
  assert.equal(twin.native, false);
});

test('addonState and describeHotPath name the path in use', () => {
  if (nativeDisabledByEnv) {
    assert.equal(addonState.kind, 'disabled');
    assert.equal(describeHotPath(), 'TypeScript twins: THINSIM_NO_NATIVE=1');
  } else {
    assert.equal(addonState.kind, 'loaded');
    assert.ok(addonState.kind === 'loaded' && fs.existsSync(addonState.file), 'the file it names exists');
    assert.equal(describeHotPath(), 'native addon: native/thinsim.node');
  }
});

test('THINSIM_NO_NATIVE=1 in a child process selects the twins silently', () => {
  const entry = path.resolve(__dirname, '../../src/hot/index.js');
  const script = `const h=require(${JSON.stringify(entry)}); process.stdout.write(JSON.stringify({native:h.hot.native, err:h.hot.loadError, impl: h.nativeImpl===undefined}))`;
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, THINSIM_NO_NATIVE: '1' }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const out = JSON.parse(r.stdout);
  assert.equal(out.native, false);
  assert.equal(out.impl, true);
  assert.match(out.err, /THINSIM_NO_NATIVE/);
});

test('requireNative: the addon, or ThinError E_NATIVE saying what to change', () => {
  if (nativeImpl) {
    assert.equal(requireNative('O_DIRECT'), nativeImpl);
  } else {
    assert.throws(
      () => requireNative('O_DIRECT'),
      (e) => isThinError(e, 'E_NATIVE') && /^O_DIRECT: this needs thinsim's native addon/.test(e.message) && /unset that variable/.test(e.message),
    );
  }
});

/** Misuse is a ThinError E_INVALID with a message naming the problem, never a raw JS error. */
const isInvalid = (e: unknown) => e instanceof ThinError && e.code === 'E_INVALID' && e.message.length > 0;

/** Calls with a wrong JS type somewhere. */
const TYPE_ERRORS: Array<[string, (h: HotPath) => unknown]> = [
  ['bitmapGet(string)', (h) => h.bitmapGet('abc' as unknown as Uint8Array, 0)],
  ['bitmapGet(Uint16Array)', (h) => h.bitmapGet(new Uint16Array(4) as unknown as Uint8Array, 0)],
  ['bitmapGet(buf, "1")', (h) => h.bitmapGet(Buffer.alloc(1), '1' as unknown as number)],
  ['bitmapGet(buf) missing index', (h) => (h.bitmapGet as (b: Uint8Array) => number)(Buffer.alloc(1))],
  ['bitmapSet(buf, 0, null)', (h) => h.bitmapSet(Buffer.alloc(1), 0, null as unknown as number)],
  ['bitmapFindFree(buf, 0, 4, 1n)', (h) => h.bitmapFindFree(Buffer.alloc(1), 0, 4, 1n as unknown as number)],
  ['bitmapCount(buf, 0, 4, Uint32Array)', (h) => h.bitmapCount(Buffer.alloc(1), 0, 4, new Uint32Array(4) as unknown as Float64Array)],
  ['crc32c(ArrayBuffer)', (h) => h.crc32c(new ArrayBuffer(4) as unknown as Uint8Array)],
  ['crc32c(buf, "0")', (h) => h.crc32c(Buffer.alloc(4), '0' as unknown as number)],
  ['blockChecksum(DataView)', (h) => h.blockChecksum(new DataView(new ArrayBuffer(8)) as unknown as Uint8Array, 0)],
  ['isZero(undefined)', (h) => (h.isZero as () => boolean)()],
  ['copyRange("3", ...)', (h) => h.copyRange('3' as unknown as number, 0, 4, 0, 1)],
  ['copyRangeAsync(..., undefined len)', (h) => (h.copyRangeAsync as (...a: number[]) => unknown)(3, 0, 4, 0)],
  ['zeroRange(fd, 0, 1, 1)', (h) => h.zeroRange(3, 0, 1, 1 as unknown as boolean)],
  ['alignedBuffer("4096")', (h) => h.alignedBuffer('4096' as unknown as number)],
];

/** Calls with the right types but bad values. */
const RANGE_ERRORS: Array<[string, (h: HotPath) => unknown]> = [
  ['bitmapGet index past end', (h) => h.bitmapGet(Buffer.alloc(2), 8)],
  ['bitmapGet negative', (h) => h.bitmapGet(Buffer.alloc(2), -1)],
  ['bitmapGet fractional', (h) => h.bitmapGet(Buffer.alloc(2), 1.5)],
  ['bitmapGet NaN', (h) => h.bitmapGet(Buffer.alloc(2), NaN)],
  ['bitmapSet v = 4', (h) => h.bitmapSet(Buffer.alloc(2), 0, 4)],
  ['bitmapFindFree end past bitmap', (h) => h.bitmapFindFree(Buffer.alloc(2), 0, 9, 0)],
  ['bitmapFindFree begin > end', (h) => h.bitmapFindFree(Buffer.alloc(2), 5, 4, 0)],
  ['bitmapCount out too short', (h) => h.bitmapCount(Buffer.alloc(2), 0, 8, new Float64Array(3))],
  ['crc32c init 2^32', (h) => h.crc32c(Buffer.alloc(2), 2 ** 32)],
  ['blockChecksum block < 4 bytes', (h) => h.blockChecksum(Buffer.alloc(3), 0)],
  ['blockChecksum salt -1', (h) => h.blockChecksum(Buffer.alloc(8), -1)],
  ['copyRange offset 2^53', (h) => h.copyRange(3, 2 ** 53, 4, 0, 1)],
  ['copyRange off + len > 2^53-1', (h) => h.copyRange(3, 2 ** 53 - 10, 4, 0, 100)],
  ['copyRange fd -1', (h) => h.copyRange(-1, 0, 4, 0, 1)],
  ['zeroRange Infinity len', (h) => h.zeroRange(3, 0, Infinity, false)],
  ['alignedBuffer align 3', (h) => h.alignedBuffer(10, 3)],
  ['alignedBuffer align 0', (h) => h.alignedBuffer(10, 0)],
  ['alignedBuffer align 2^21', (h) => h.alignedBuffer(10, 2 ** 21)],
];

test('wrong argument types throw ThinError E_INVALID and the process survives', (t) =>
  eachImpl(t, (impl) => {
    for (const [name, call] of TYPE_ERRORS) assert.throws(() => call(impl), isInvalid, name);
    assert.equal(impl.noop(), 0, 'still callable afterwards');
  }));

test('bad argument values throw ThinError E_INVALID', (t) =>
  eachImpl(t, (impl) => {
    for (const [name, call] of RANGE_ERRORS) assert.throws(() => call(impl), isInvalid, name);
  }));

test('a Rust panic becomes a ThinError E_NATIVE and the process lives on', (t) => {
  const hooks = nativeTestHooks;
  if (hooks === undefined) {
    t.skip('native addon not in use');
    return;
  }
  for (let k = 0; k < 3; k++) {
    assert.throws(() => hooks.panic(), (e: unknown) => isThinError(e, 'E_NATIVE') && /panic/.test(e.message));
  }
  assert.equal(hot.crc32c(Buffer.from('123456789')) ^ 0xffffffff, 0xe3069283 | 0);
});
