/**
 * Seeded runs: which seeds a suite runs (THINSIM_SEED=s replays one, THINSIM_SEEDS=n runs n)
 * and failures that name the seed to replay. The generator itself is support/random.ts.
 */

import type { TestContext } from 'node:test';
import { withTmpdir, type TmpDir } from './oracle';

/** Seeds for a suite: `n` fixed ones by default; THINSIM_SEED=s runs one, THINSIM_SEEDS=n runs n. */
export function suiteSeeds(n: number, base: number): number[] {
  if (process.env.THINSIM_SEED) return [Number(process.env.THINSIM_SEED)];
  return Array.from({ length: Number(process.env.THINSIM_SEEDS ?? n) }, (_, i) => base + i);
}

/**
 * One subtest per seed of `suiteSeeds(n, base)`, each with a fresh temporary directory
 * that is removed afterwards, pass or fail. Subtests are named by seed; replay one with
 * THINSIM_SEED=<seed>.
 */
export async function forSeedsInTmpdir(t: TestContext, n: number, base: number, body: (seed: number, dir: TmpDir) => void | Promise<void>): Promise<void> {
  for (const seed of suiteSeeds(n, base)) await t.test(`seed ${seed}`, () => withTmpdir((dir) => body(seed, dir)));
}

/** Run a seeded body; on failure the error names the seed and how to replay it. */
export async function seeded<T>(t: TestContext, seed: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const msg = `seed ${seed} (replay: THINSIM_SEED=${seed})`;
    t.diagnostic(msg);
    if (e instanceof Error) e.message = `${e.message}\n  [${msg}]`;
    throw e;
  }
}
