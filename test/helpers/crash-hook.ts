/**
 * The crash tests' hook: preloaded into a child (`node --require .../crash-hook.js ...`),
 * it SIGKILLs that process at the crash point named by THINSIM_CRASH_AT (for example
 * `layers:create:2` or `containerd:commit:3`; src/crash-points.ts), the first time it is
 * reached, or the Nth time with THINSIM_CRASH_NTH=N (the crash farm uses it to stop, say,
 * the third layer of an image import). Loaded by `node --test` with no such variable, it
 * does nothing.
 */
import { setCrashHook } from '../../src/crash-points';

export const CRASH_HOOK = __filename;

const at = process.env.THINSIM_CRASH_AT;
const nth = Number(process.env.THINSIM_CRASH_NTH ?? 1);
let seen = 0;
if (at) setCrashHook((point) => { if (point === at && ++seen >= nth) process.kill(process.pid, 'SIGKILL'); });
