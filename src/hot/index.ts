/**
 * Hot paths: the only module that loads the native addon (native/thinsim.node).
 *
 * Contract:
 * - `hot` is what the rest of thinsim calls. It is the Rust addon when it loads, else the
 *   TypeScript twin; both implement HotPath (./hot-path.ts) with identical results and
 *   errors, so callers never branch on which one they got.
 * - Every error either implementation raises is a ThinError (./errors.ts): the addon builds
 *   its errors through the factory registered here at load time, the twin through the
 *   same helpers. Nothing raw escapes src/hot.
 * - The addon is not loaded at all when env THINSIM_NO_NATIVE=1; then, or when it is
 *   missing (not built: `npm install` without cargo) or fails to load (wrong platform,
 *   out of date), `hot.native === false` and `addonState` / `hot.loadError` say why.
 *   Nothing is printed: a missing addon is a speed problem, not an error.
 *   `describeHotPath()` says in one phrase which path is in use (for `thinsim --version`).
 * - `twin` is always the TypeScript implementation and `nativeImpl` the addon (or
 *   undefined), so tests and benchmarks can pit them against each other.
 * - Code that truly needs the addon (O_DIRECT needs really aligned buffers) calls
 *   requireNative(), which throws ThinError E_NATIVE naming what to install or change,
 *   instead of silently degrading.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError } from '../errors';
import type { HotPath } from './hot-path';
import { nativeErrorFactory } from './errors';
import { twin } from './twin';

export { ZERO_METHOD } from './hot-path';
export type { HotPath, ZeroMethod } from './hot-path';
export { twin, crc32cSlice8 } from './twin';

/** The HotPath calls, by name: what a usable addon must export. */
const HOT_CALLS = [
  'noop',
  'bitmapGet',
  'bitmapSet',
  'bitmapFindFree',
  'bitmapCount',
  'crc32c',
  'blockChecksum',
  'isZero',
  'leafRuns',
  'copyRange',
  'copyRangeAsync',
  'patchCopyAsync',
  'zeroRange',
  'readNoWait',
  'alignedBuffer',
] as const satisfies readonly (keyof HotPath)[];

/** The addon's raw exports (native/src/exports.rs): the HotPath calls, plus setup and a test hook. */
type NativeAddon = Pick<HotPath, (typeof HOT_CALLS)[number]> & {
  /** Every later error of the addon is built by this function. */
  setErrorFactory(factory: typeof nativeErrorFactory): void;
  /** Panics inside Rust; for tests proving a panic becomes a ThinError E_NATIVE. */
  _panicForTest(): never;
};

/** Where the addon stands in this process. */
export type AddonState =
  | { readonly kind: 'loaded'; readonly file: string }
  | { readonly kind: 'disabled' }
  | { readonly kind: 'missing'; readonly candidates: readonly string[] }
  | { readonly kind: 'failed'; readonly file: string; readonly error: string };

/** True when THINSIM_NO_NATIVE=1 asks for the twins only. */
export const nativeDisabledByEnv: boolean = process.env.THINSIM_NO_NATIVE === '1';

/** The package root: `native/` lives there. Seen from dist/src/hot (compiled) or src/hot (sources). */
const PACKAGE_ROOTS = [path.resolve(__dirname, '../../..'), path.resolve(__dirname, '../..')];

function load(): { state: AddonState; addon?: NativeAddon } {
  if (nativeDisabledByEnv) return { state: { kind: 'disabled' } };
  const candidates = PACKAGE_ROOTS.map((root) => path.join(root, 'native', 'thinsim.node'));
  const file = candidates.find((p) => fs.existsSync(p));
  if (file === undefined) return { state: { kind: 'missing', candidates } };
  let addon: NativeAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as NativeAddon;
  } catch (e) {
    return { state: { kind: 'failed', file, error: (e as Error).message } };
  }
  const absent = [...HOT_CALLS, 'setErrorFactory'].filter((name) => typeof (addon as unknown as Record<string, unknown>)[name] !== 'function');
  if (absent.length > 0) {
    return { state: { kind: 'failed', file, error: `it is out of date (no ${absent.join(', ')}); rebuild it with npm run build:native` } };
  }
  try {
    addon.setErrorFactory(nativeErrorFactory);
  } catch (e) {
    return { state: { kind: 'failed', file, error: `setErrorFactory failed: ${(e as Error).message}` } };
  }
  return { state: { kind: 'loaded', file }, addon };
}

const loaded = load();

/** Where the addon stands: loaded (and from which file), disabled, missing, or failed. */
export const addonState: AddonState = loaded.state;

/** The addon file relative to the package root when it sits there (native/thinsim.node). */
function shortPath(file: string): string {
  for (const root of PACKAGE_ROOTS) {
    const rel = path.relative(root, file);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) return rel.split(path.sep).join('/');
  }
  return file;
}

/** Why the addon is not in use, as a sentence fragment; undefined when it is. */
function whyNot(state: AddonState): string | undefined {
  switch (state.kind) {
    case 'loaded':
      return undefined;
    case 'disabled':
      return 'native addon disabled by THINSIM_NO_NATIVE=1';
    case 'missing':
      return `native addon not built (looked for ${state.candidates.join(', ')}); install Rust's cargo and run npm run build:native`;
    case 'failed':
      return `cannot load native addon ${state.file}: ${state.error}`;
  }
}

/** Why the addon is not in use, or undefined when it is. */
export const loadError: string | undefined = whyNot(addonState);

/**
 * Which implementation serves the hot paths, in one phrase: `native addon:
 * native/thinsim.node`, or `TypeScript twins: <why>`.
 */
export function describeHotPath(): string {
  switch (addonState.kind) {
    case 'loaded':
      return `native addon: ${shortPath(addonState.file)}`;
    case 'disabled':
      return 'TypeScript twins: THINSIM_NO_NATIVE=1';
    case 'missing':
      return 'TypeScript twins: the native addon was not built';
    case 'failed':
      return `TypeScript twins: the native addon failed to load (${addonState.error})`;
  }
}

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
    leafRuns: loaded.addon.leafRuns,
    copyRange: loaded.addon.copyRange,
    copyRangeAsync: loaded.addon.copyRangeAsync,
    patchCopyAsync: loaded.addon.patchCopyAsync,
    zeroRange: loaded.addon.zeroRange,
    readNoWait: loaded.addon.readNoWait,
    alignedBuffer: loaded.addon.alignedBuffer,
  });

/** Test hooks into the addon that are not part of HotPath. */
export const nativeTestHooks: { panic(): never } | undefined = loaded.addon && { panic: loaded.addon._panicForTest };

/** The implementation thinsim uses. */
export const hot: HotPath = nativeImpl ?? Object.freeze({ ...twin, native: false, loadError });

/** What a user must do to get the addon, by state. */
function remedy(state: AddonState): string {
  switch (state.kind) {
    case 'loaded':
      return '';
    case 'disabled':
      return 'it is turned off by THINSIM_NO_NATIVE=1; unset that variable';
    case 'missing':
      return 'it was not built (no native/thinsim.node); install Rust (cargo) and run `npm run build:native`';
    case 'failed':
      return `it failed to load (${state.error}); rebuild it with \`npm run build:native\``;
  }
}

/** The addon, or a ThinError E_NATIVE saying that `feature` needs it and what to do. */
export function requireNative(feature: string): HotPath {
  if (nativeImpl === undefined) {
    throw new ThinError('E_NATIVE', `${feature}: this needs thinsim's native addon, but ${remedy(addonState)}`, {
      addon: addonState.kind,
      loadError,
    });
  }
  return nativeImpl;
}
