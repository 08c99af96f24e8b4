/**
 * The fsync fault shim (fault-fsync.c), compiled for this test run with `cc`: an
 * LD_PRELOAD library that makes one fsync/fdatasync of a named file fail with EIO once a
 * trigger file exists. `buildFaultShim()` returns undefined (with the reason) when `cc`
 * is missing or the build fails, so a test can skip visibly.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './oracle';

export interface FaultShim {
  /** The built library (LD_PRELOAD it). */
  library: string;
  /** The environment that makes the sync of `file` fail once `arm` exists (log: where it reports firing). */
  env(file: string, arm: string, log: string): NodeJS.ProcessEnv;
}

/** Build the shim into `dir`; undefined and why when it cannot be built. */
export function buildFaultShim(dir: string): FaultShim | { skip: string } {
  const source = path.join(repoRoot(), 'test', 'helpers', 'fault-fsync.c');
  if (spawnSync('sh', ['-c', 'command -v cc']).status !== 0) return { skip: 'cc is not installed (needed to build the LD_PRELOAD fsync fault shim)' };
  const library = path.join(dir, 'fault-fsync.so');
  const r = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-Wall', '-o', library, source, '-ldl'], { encoding: 'utf8' });
  if (r.status !== 0 || !fs.existsSync(library)) return { skip: `building the fsync fault shim failed: ${r.stderr || r.error}` };
  return {
    library,
    env: (file, arm, log) => ({
      ...process.env, LD_PRELOAD: library, THINSIM_FAULT_FILE: file, THINSIM_FAULT_ARM: arm, THINSIM_FAULT_LOG: log,
    }),
  };
}
