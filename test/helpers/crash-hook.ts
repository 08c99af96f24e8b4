/**
 * The crash tests' hook: preloaded into a child (`node --require .../crash-hook.js ...`),
 * it SIGKILLs that process at the crash point named by THINSIM_CRASH_AT (for example
 * `layers:create:2` or `containerd:commit:3`; src/crash-points.ts). Loaded by `node --test`
 * with no such variable, it does nothing.
 */
import { setCrashHook } from '../../src/crash-points';

export const CRASH_HOOK = __filename;

const at = process.env.THINSIM_CRASH_AT;
if (at) setCrashHook((point) => { if (point === at) process.kill(process.pid, 'SIGKILL'); });
