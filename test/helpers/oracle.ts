/**
 * Oracle helpers for tests: the real thin-provisioning-tools (found by support/oracle-tools.ts,
 * which the benchmarks share), kernel-written fixtures, temporary files. Tests must skip
 * visibly when a tool or fixture is absent:
 *
 *   const t1 = tools1x();
 *   test('...', (t) => { if (!t1) return t.skip(skipReason.tools1x); ... });
 *
 * Kernel-written fixtures live in <repo>/../shared/fixtures/kernel-metadata (never copied into
 * the repo; THINSIM_SHARED_DIR overrides the shared directory); kernelFixture(name) unpacks one
 * once into <repo>/.tools/fixtures/<name>.bin. To see what skips: THINSIM_TPT1=/nonexistent
 * (no 1.x), THINSIM_TPT09_DIR=/nonexistent (no 0.9.0), THINSIM_SHARED_DIR=/nonexistent (no
 * fixtures).
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { repoRoot, sharedDir, tools09, tools1x, toolsReason, type ToolResult, type Tools } from '../../support/oracle-tools';

export { pdataTools, repoRoot, sharedDir, tools09, tools1x, type ToolResult, type Tools } from '../../support/oracle-tools';

/** Why a tool or fixture is unavailable, for t.skip(). Empty string when it is available. */
export const skipReason = {
  get tools1x(): string {
    return toolsReason.tools1x;
  },
  get tools09(): string {
    return toolsReason.tools09;
  },
  fixture(name: string): string {
    return fixtureReason(name);
  },
};

const skippedParts = new WeakMap<TestContext, Set<string>>();

/**
 * Skip one oracle comparison inside a test that goes on with its other checks: a skipped
 * subtest named `what`, with the reason (once per test), so the skip is counted and printed
 * like any other, e.g. skipPart(t, 'thin_ls 1.x', skipReason.tools1x).
 */
export function skipPart(t: TestContext, what: string, reason: string): void {
  let seen = skippedParts.get(t);
  if (!seen) skippedParts.set(t, (seen = new Set()));
  if (seen.has(what)) return;
  seen.add(what);
  void t.test(what, { skip: reason }, () => undefined);
}

// ---- kernel fixtures ------------------------------------------------------------------------

const fixtureReasons = new Map<string, string>();

function fixtureReason(name: string): string {
  if (!fixtureReasons.has(name)) kernelFixture(name);
  return fixtureReasons.get(name) ?? '';
}

/**
 * Path of the unpacked kernel fixture `<name>` (e.g. "tmeta"), unpacking it on first use into
 * <repo>/.tools/fixtures/<name>.bin; undefined when shared/ or the 1.x tools are missing
 * (reason in skipReason.fixture(name)). Callers must not modify the returned file: copy it.
 */
export function kernelFixture(name: string): string | undefined {
  const pack = path.join(sharedDir(), 'fixtures', 'kernel-metadata', `${name}.pack`);
  const outDir = path.join(repoRoot(), '.tools', 'fixtures');
  const out = path.join(outDir, `${name}.bin`);
  // The pack is the fixture; an unpacked copy left in .tools must not stand in for a missing one.
  if (!fs.existsSync(pack)) {
    fixtureReasons.set(name, `kernel fixture ${pack} not found (the shared/ directory must sit next to the repository, or set THINSIM_SHARED_DIR)`);
    return undefined;
  }
  if (fs.existsSync(out) && fs.statSync(out).size > 0 && fs.statSync(out).mtimeMs >= fs.statSync(pack).mtimeMs) {
    fixtureReasons.set(name, '');
    return out;
  }
  const t = tools1x();
  if (!t || !t.unpack) {
    fixtureReasons.set(name, `cannot unpack kernel fixture ${name}: ${skipReason.tools1x}`);
    return undefined;
  }
  fs.mkdirSync(outDir, { recursive: true });
  // Unpack beside the target and rename, so concurrent test files never see a partial file.
  const tmp = `${out}.${process.pid}.${Date.now()}.tmp`;
  const r = t.unpack(pack, tmp);
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    fixtureReasons.set(name, `thin_metadata_unpack ${pack} failed (${r.status}): ${r.stderr.trim()}`);
    return undefined;
  }
  fs.renameSync(tmp, out);
  fixtureReasons.set(name, '');
  return out;
}

// ---- temporary files ------------------------------------------------------------------------

export interface TmpDir {
  readonly path: string;
  /** Path of `name` inside the directory. */
  file(name: string): string;
  /** Create (or resize) a sparse file of `bytes` (default 16 MiB), as thin_restore needs. */
  sparse(name: string, bytes?: number): string;
  /** Remove the directory and everything in it. */
  cleanup(): void;
}

/** A fresh temporary directory; call cleanup() (e.g. in t.after) or use withTmpdir. */
export function tmpdir(prefix = 'thinsim-'): TmpDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    path: dir,
    file: (name) => path.join(dir, name),
    sparse: (name, bytes = 16 * 1024 * 1024) => {
      const p = path.join(dir, name);
      fs.rmSync(p, { force: true });
      const fd = fs.openSync(p, 'w');
      try {
        fs.ftruncateSync(fd, bytes);
      } finally {
        fs.closeSync(fd);
      }
      return p;
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Run `fn` with a temporary directory that is removed afterwards, even on failure. */
export async function withTmpdir<T>(fn: (d: TmpDir) => T | Promise<T>, prefix?: string): Promise<T> {
  const d = tmpdir(prefix);
  try {
    return await fn(d);
  } finally {
    d.cleanup();
  }
}

/** Throw with the tool's stderr when it did not exit 0. */
export function ok(r: ToolResult, what: string): ToolResult {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}: ${r.stderr.trim() || r.stdout.slice(0, 500)}`);
  return r;
}

/** Both oracles (1.x, 0.9.0), or undefined after skipping `t` with the reason one is missing. */
export function bothTools(t: { skip(msg: string): void }): [Tools, Tools] | undefined {
  const t1 = tools1x();
  const t09 = tools09();
  if (!t1) { t.skip(skipReason.tools1x); return undefined; }
  if (!t09) { t.skip(skipReason.tools09); return undefined; }
  return [t1, t09];
}
