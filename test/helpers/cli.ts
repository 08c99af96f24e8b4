/**
 * Runners for the built CLI (`node bin/thinsim.js`) and other programs in tests: blocking and
 * non-blocking, each with a timeout, returning status, signal, stdout and stderr.
 */

import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from './oracle';

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run `node bin/thinsim.js ARGS` (the built CLI) with a timeout; never throws. */
export function thinsim(args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): CliResult {
  const bin = path.join(repoRoot(), 'bin', 'thinsim.js');
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, maxBuffer: 1 << 30, input: opts.input,
  });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', timedOut };
}

/** Require exit 0 and return stdout. */
export function thinsimOk(args: readonly string[]): string {
  const r = thinsim(args);
  if (r.status !== 0) throw new Error(`thinsim ${args.join(' ')} exited ${r.status}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Like thinsim(), without blocking: several CLI runs can overlap. */
export function thinsimAsync(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return runAsync(process.execPath, [path.join(repoRoot(), 'bin', 'thinsim.js'), ...args], opts);
}

/** Run any program without blocking, with a timeout; never rejects. */
export function runAsync(cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', (e) => resolve({ status: null, signal: null, stdout: '', stderr: String(e), timedOut: false }));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 60_000);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}
