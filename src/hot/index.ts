/**
 * Hot paths: the only module that loads the native addon (native/thinsim.node).
 *
 * Contract:
 * - `hot` is what the rest of thinsim calls. It is the Rust addon when it loads, else the
 *   TypeScript twin; both implement HotPath (./hot-path.ts) with identical results and
 *   errors, so callers never branch on which one they got.
 * - The addon is not loaded at all when env THINSIM_NO_NATIVE=1; then, or when loading
 *   fails (not built, wrong platform), `hot.native === false` and `hot.loadError` says
 *   why. Nothing is printed: a missing addon is a speed problem, not an error.
 * - `twin` is always the TypeScript implementation and `nativeImpl` the addon (or
 *   undefined), so tests and benchmarks can pit them against each other.
 * - Code that truly needs the addon (O_DIRECT needs really aligned buffers) calls
 *   requireNative(), which throws ThinError E_NATIVE instead of silently degrading.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError } from '../errors';
import type { HotPath } from './hot-path';
import { twin } from './twin';

export { ZERO_METHOD } from './hot-path';
export type { HotPath, ZeroMethod } from './hot-path';
export { twin, crc32cSlice8 } from './twin';

/** The addon's raw exports (native/src/exports.rs): the HotPath calls, plus a test hook. */
type NativeAddon = Omit<HotPath, 'native' | 'loadError'> & {
  /** Panics inside Rust; for tests proving a panic becomes a JS Error (code E_NATIVE). */
  _panicForTest(): never;
};

/** True when THINSIM_NO_NATIVE=1 asks for the twins only. */
export const nativeDisabledByEnv: boolean = process.env.THINSIM_NO_NATIVE === '1';

/**
 * Where the addon may be: `native/` at the package root, seen from dist/src/hot (compiled)
 * or from src/hot (run from sources by a TS loader).
 */
function addonCandidates(): string[] {
  return [path.resolve(__dirname, '../../../native/thinsim.node'), path.resolve(__dirname, '../../native/thinsim.node')];
}

function load(): { addon?: NativeAddon; error?: string } {
  if (nativeDisabledByEnv) return { error: 'native addon disabled by THINSIM_NO_NATIVE=1' };
  const candidates = addonCandidates();
  const file = candidates.find((p) => fs.existsSync(p));
  if (file === undefined) return { error: `native addon not built (looked for ${candidates.join(', ')}; run npm run build:native)` };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { addon: require(file) as NativeAddon };
  } catch (e) {
    return { error: `cannot load native addon ${file}: ${(e as Error).message}` };
  }
}

const loaded = load();

/** The addon as a HotPath (its functions are used directly: no wrapper per call), or undefined. */
export const nativeImpl: HotPath | undefined =
  loaded.addon &&
  Object.freeze({
    native: true,
    loadError: undefined,
    noop: loaded.addon.noop,
    bitmapGet: loaded.addon.bitmapGet,
    bitmapSet: loaded.addon.bitmapSet,
    bitmapFindFree: loaded.addon.bitmapFindFree,
    bitmapCount: loaded.addon.bitmapCount,
    crc32c: loaded.addon.crc32c,
    blockChecksum: loaded.addon.blockChecksum,
    isZero: loaded.addon.isZero,
    copyRange: loaded.addon.copyRange,
    copyRangeAsync: loaded.addon.copyRangeAsync,
    zeroRange: loaded.addon.zeroRange,
    alignedBuffer: loaded.addon.alignedBuffer,
  });

/** Test hooks into the addon that are not part of HotPath. */
export const nativeTestHooks: { panic(): never } | undefined = loaded.addon && { panic: loaded.addon._panicForTest };

/** Why the addon is not in use, or undefined when it is. */
export const loadError: string | undefined = loaded.error;

/** The implementation thinsim uses. */
export const hot: HotPath = nativeImpl ?? Object.freeze({ ...twin, native: false, loadError: loaded.error });

/** The addon, or a ThinError E_NATIVE naming `why` it is needed. */
export function requireNative(why: string): HotPath {
  if (nativeImpl === undefined) {
    throw new ThinError('E_NATIVE', `${why} needs the native addon, which is not in use: ${loadError}`, { loadError });
  }
  return nativeImpl;
}
