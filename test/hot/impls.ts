/**
 * Shared by the hot-path tests: the implementations to run, a per-implementation subtest
 * helper that visibly skips the native side when it is not in use, and unaligned buffers.
 */

import type { TestContext } from 'node:test';
import { nativeImpl, nativeDisabledByEnv, loadError, twin, type HotPath } from '../../src/hot';

export const SKIP_REASON = nativeDisabledByEnv ? 'native disabled by THINSIM_NO_NATIVE' : `native addon not in use: ${loadError}`;

/**
 * Run `fn` once per implementation as subtests named 'twin' and 'native'; the native one
 * is skipped (and reported as skipped) when the addon is not loaded.
 */
export async function eachImpl(t: TestContext, fn: (impl: HotPath, t: TestContext) => void | Promise<void>): Promise<void> {
  await t.test('twin', (st) => fn(twin, st));
  await t.test('native', (st) => {
    if (nativeImpl === undefined) {
      st.skip(SKIP_REASON);
      return;
    }
    return fn(nativeImpl, st);
  });
}

/**
 * A Buffer of `bytes` placed at byte offset `offset` of a larger ArrayBuffer, so its data
 * address is unaligned whenever offset is (pooled Buffer slices look like this).
 */
export function unaligned(bytes: ArrayLike<number>, offset: number): Buffer {
  const ab = new ArrayBuffer(offset + bytes.length + 13);
  const b = Buffer.from(ab, offset, bytes.length);
  b.set(bytes);
  // Poison the bytes around the view: an implementation reading outside it would see them.
  new Uint8Array(ab, 0, offset).fill(0xff);
  new Uint8Array(ab, offset + bytes.length).fill(0x00);
  return b;
}
