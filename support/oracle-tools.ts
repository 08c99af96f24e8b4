/**
 * Where the real thin-provisioning-tools are, and how to run them: the oracles the tests
 * compare against and the baselines the benchmarks measure against. Not a test helper and not
 * part of the library (nothing under src/ imports support/); test/helpers/oracle.ts adds the
 * test-only pieces (kernel fixtures, temporary directories, visible skips).
 *
 * Primary: thin-provisioning-tools 1.x (Rust), unpacked into <repo>/.tools/tpt by
 * scripts/get-oracles.sh (override with THINSIM_TPT1=/path/to/pdata_tools).
 * Secondary: 0.9.0 (C++) from the distribution, /usr/sbin/thin_* (override the directory with
 * THINSIM_TPT09_DIR). A missing tool is undefined, with the reason in toolsReason.
 * THINSIM_TPT1=/nonexistent or THINSIM_TPT09_DIR=/nonexistent hides one, to see what skips.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
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

/** Directory holding package.json (works from the sources and from dist/). */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository root above ${__dirname}`);
    dir = up;
  }
}

/**
 * <repo>/../shared, where CI puts a copy of the shared directory (kernel fixtures, the 1.x
 * tools' getter); THINSIM_SHARED_DIR overrides it (e.g. =/nonexistent, to see what skips).
 */
export function sharedDir(): string {
  return process.env.THINSIM_SHARED_DIR ?? path.resolve(repoRoot(), '..', 'shared');
}

/** Path of thin-provisioning-tools 1.x's multi-call binary (which may not exist). */
export function pdataTools(): string {
  return process.env.THINSIM_TPT1 ?? path.join(repoRoot(), '.tools', 'tpt', 'usr', 'sbin', 'pdata_tools');
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

interface Probe {
  tools?: Tools;
  reason: string;
}

let cache1x: Probe | undefined;
let cache09: Probe | undefined;

function probe1x(): Probe {
  const bin = pdataTools();
  if (!fs.existsSync(bin)) {
    return { reason: `thin-provisioning-tools 1.x not found at ${bin}; run scripts/get-oracles.sh (needs ../shared) or set THINSIM_TPT1` };
  }
  const v = exec(bin, ['thin_check', '-V']);
  if (v.status !== 0) return { reason: `thin-provisioning-tools 1.x at ${bin} does not run: ${v.stderr.trim()}` };
  const version = v.stdout.trim();
  return { tools: makeTools('1.x', version, (tool, args) => exec(bin, [tool, ...args])), reason: '' };
}

function probe09(): Probe {
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

/** thin-provisioning-tools 1.x, or undefined (see toolsReason.tools1x). */
export function tools1x(): Tools | undefined {
  cache1x ??= probe1x();
  return cache1x.tools;
}

/** thin-provisioning-tools 0.9.x, or undefined (see toolsReason.tools09). */
export function tools09(): Tools | undefined {
  cache09 ??= probe09();
  return cache09.tools;
}

/** Why a tool is unavailable (for a skip or a "not run" note); empty when it is available. */
export const toolsReason = {
  get tools1x(): string {
    tools1x();
    return cache1x!.reason;
  },
  get tools09(): string {
    tools09();
    return cache09!.reason;
  },
};
