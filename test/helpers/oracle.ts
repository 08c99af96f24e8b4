/**
 * Oracle helpers: find the real thin-provisioning-tools and run them on files.
 *
 * Primary oracle: thin-provisioning-tools 1.x (Rust), unpacked into <repo>/.tools/tpt by
 * scripts/get-oracles.sh (override with THINSIM_TPT1=/path/to/pdata_tools).
 * Secondary: 0.9.0 (C++) from the distribution, /usr/sbin/thin_* (override the directory with
 * THINSIM_TPT09_DIR). Tests must skip visibly when a tool is absent:
 *
 *   const t1 = tools1x();
 *   test('...', (t) => { if (!t1) return t.skip(skipReason.tools1x); ... });
 *
 * Kernel-written fixtures live in <repo>/../shared/fixtures/kernel-metadata (never copied into
 * the repo); kernelFixture(name) unpacks one once into <repo>/.tools/fixtures/<name>.bin.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface ToolResult {
  /** Exit status; null when killed by a signal. */
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface Tools {
  /** '1.x' or '0.9'. */
  readonly flavour: '1.x' | '0.9';
  /** What `thin_check -V` printed, e.g. "1.1.0" or "0.9.0". */
  readonly version: string;
  /** Run any sub-command (thin_check, thin_dump, ...) with arguments. */
  run(tool: string, args: readonly string[]): ToolResult;
  check(file: string, args?: readonly string[]): ToolResult;
  dump(file: string, args?: readonly string[]): ToolResult;
  restore(xmlFile: string, outFile: string, args?: readonly string[]): ToolResult;
  ls(file: string, args?: readonly string[]): ToolResult;
  delta(file: string, args?: readonly string[]): ToolResult;
  rmap(file: string, args?: readonly string[]): ToolResult;
  repair(inFile: string, outFile: string, args?: readonly string[]): ToolResult;
  /** thin_metadata_unpack (1.x only; undefined for 0.9). */
  unpack?(pack: string, out: string): ToolResult;
}

/** Directory holding package.json (works from test/ and from dist/test/). */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository root above ${__dirname}`);
    dir = up;
  }
}

/** <repo>/../shared, where CI puts a copy of the shared directory. */
export function sharedDir(): string {
  return path.resolve(repoRoot(), '..', 'shared');
}

const MAX_BUFFER = 1024 * 1024 * 1024;

function exec(cmd: string, args: readonly string[]): ToolResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: MAX_BUFFER });
  if (r.error) return { status: null, stdout: '', stderr: String(r.error) };
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function makeTools(flavour: '1.x' | '0.9', version: string, invoke: (tool: string, args: readonly string[]) => ToolResult): Tools {
  const t: Tools = {
    flavour,
    version,
    run: invoke,
    check: (file, args = []) => invoke('thin_check', [...args, file]),
    dump: (file, args = []) => invoke('thin_dump', [...args, file]),
    restore: (xml, out, args = []) => invoke('thin_restore', [...args, '-i', xml, '-o', out]),
    ls: (file, args = []) => invoke('thin_ls', [...args, file]),
    delta: (file, args = []) => invoke('thin_delta', [...args, file]),
    rmap: (file, args = []) => invoke('thin_rmap', [...args, file]),
    repair: (inFile, outFile, args = []) => invoke('thin_repair', [...args, '-i', inFile, '-o', outFile]),
  };
  if (flavour === '1.x') t.unpack = (pack, out) => invoke('thin_metadata_unpack', ['-i', pack, '-o', out]);
  return t;
}

let cache1x: { tools?: Tools; reason: string } | undefined;
let cache09: { tools?: Tools; reason: string } | undefined;

function probe1x(): { tools?: Tools; reason: string } {
  const bin = process.env.THINSIM_TPT1 ?? path.join(repoRoot(), '.tools', 'tpt', 'usr', 'sbin', 'pdata_tools');
  if (!fs.existsSync(bin)) {
    return { reason: `thin-provisioning-tools 1.x not found at ${bin}; run scripts/get-oracles.sh (needs ../shared) or set THINSIM_TPT1` };
  }
  const v = exec(bin, ['thin_check', '-V']);
  if (v.status !== 0) return { reason: `thin-provisioning-tools 1.x at ${bin} does not run: ${v.stderr.trim()}` };
  const version = v.stdout.trim();
  return { tools: makeTools('1.x', version, (tool, args) => exec(bin, [tool, ...args])), reason: '' };
}

function probe09(): { tools?: Tools; reason: string } {
  const dir = process.env.THINSIM_TPT09_DIR ?? '/usr/sbin';
  const check = path.join(dir, 'thin_check');
  if (!fs.existsSync(check)) {
    return { reason: `thin-provisioning-tools 0.9.0 not found (${check}); apt-get install thin-provisioning-tools or set THINSIM_TPT09_DIR` };
  }
  const v = exec(check, ['-V']);
  const version = v.stdout.trim();
  if (v.status !== 0 || !version.startsWith('0.')) {
    return { reason: `${check} is not thin-provisioning-tools 0.x (thin_check -V said "${version || v.stderr.trim()}")` };
  }
  return { tools: makeTools('0.9', version, (tool, args) => exec(path.join(dir, tool), args)), reason: '' };
}

/** thin-provisioning-tools 1.x, or undefined (see skipReason.tools1x). */
export function tools1x(): Tools | undefined {
  cache1x ??= probe1x();
  return cache1x.tools;
}

/** thin-provisioning-tools 0.9.x, or undefined (see skipReason.tools09). */
export function tools09(): Tools | undefined {
  cache09 ??= probe09();
  return cache09.tools;
}

/** Why a tool or fixture is unavailable, for t.skip(). Empty string when it is available. */
export const skipReason = {
  get tools1x(): string {
    tools1x();
    return cache1x!.reason;
  },
  get tools09(): string {
    tools09();
    return cache09!.reason;
  },
  fixture(name: string): string {
    return fixtureReason(name);
  },
};

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
  if (fs.existsSync(out) && fs.statSync(out).size > 0) {
    fixtureReasons.set(name, '');
    return out;
  }
  if (!fs.existsSync(pack)) {
    fixtureReasons.set(name, `kernel fixture ${pack} not found (the shared/ directory must sit next to the repository)`);
    return undefined;
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
