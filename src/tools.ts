/**
 * External programs: find them, say which Debian package provides a missing one, and run
 * them without blocking the event loop. The one process runner of thinsim (usable from
 * every layer).
 *
 * Contract:
 * - findTool looks on PATH and in the sbin directories; requireTool throws E_NOT_FOUND
 *   naming the Debian package to install.
 * - runTool never throws: it resolves with the exit status (null when the program could
 *   not start or was killed at its timeout) and the captured output; `input`, when given,
 *   is written to the program's stdin (otherwise stdin is /dev/null); runToolOk throws
 *   E_IO with the program's words when the status is not 0.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ThinError } from './errors';

/** Which Debian package provides each tool we run. */
export const TOOL_PACKAGES: Record<string, string> = {
  'mkfs.ext4': 'e2fsprogs', tune2fs: 'e2fsprogs', e2fsck: 'e2fsprogs', debugfs: 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs', blkid: 'util-linux', mount: 'mount', umount: 'mount',
  nbdfuse: 'nbdfuse (libnbd-bin on Debian bookworm)', fuse2fs: 'fuse2fs', fusermount3: 'fuse3',
};

const EXTRA_PATH = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of `tool`, or undefined. */
export function findTool(tool: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...EXTRA_PATH];
  for (const d of dirs) {
    const p = path.join(d, tool);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** The path of `tool`, or an error naming the Debian package to install. */
export function requireTool(tool: string, why: string): string {
  const p = findTool(tool);
  if (p) return p;
  const pkg = TOOL_PACKAGES[tool] ?? tool;
  throw new ThinError('E_NOT_FOUND', `${tool} is not installed; it is needed to ${why}: install the Debian package ${pkg} (apt-get install ${pkg.split(' ')[0]})`, { tool, package: pkg });
}

export interface RunResult { status: number | null; stdout: string; stderr: string }

/** Run a program without blocking the event loop. */
export function runTool(cmd: string, args: readonly string[], timeoutMs = 300_000, input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (input !== undefined && child.stdin) {
      // A program that exits without reading all its input closes the pipe (EPIPE); its
      // exit status and stderr, resolved below, say what went wrong.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => { stderr += `\n(killed after ${timeoutMs} ms)`; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); resolve({ status: null, stdout, stderr: String(e) }); });
    child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

/**
 * Run a program and wait for it, blocking this thread: only for a process that serves
 * nothing (the tree worker, an experiment's probes of the host), never in one whose event
 * loop serves a mount. Same result shape as runTool.
 */
export function runToolSync(cmd: string, args: readonly string[], timeoutMs = 120_000): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 });
  if (r.error) return { status: null, stdout: r.stdout ?? '', stderr: String(r.error.message) };
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export async function runToolOk(cmd: string, args: readonly string[], what: string, timeoutMs?: number): Promise<string> {
  const r = await runTool(cmd, args, timeoutMs);
  if (r.status !== 0) {
    throw new ThinError('E_IO', `${what}: ${path.basename(cmd)} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`, { tool: cmd });
  }
  return r.stdout;
}

