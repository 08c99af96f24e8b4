/**
 * Crash points: named places in multi-step writes (Docker's device transactions, the
 * snapshotter's Prepare, Commit and Remove) where a crash test stops the process.
 *
 * Contract: production code only announces a point (`crashPoint('layers:create:2')`);
 * nothing happens unless a hook was installed with setCrashHook, which only tests do (a
 * child run with `node --require test/helpers/crash-hook.js`, see that file). Usable
 * from every layer.
 */
let hook: ((point: string) => void) | undefined;

/** Install (or, with undefined, remove) the function called at every crash point. */
export function setCrashHook(h: ((point: string) => void) | undefined): void {
  hook = h;
}

export function crashPoint(point: string): void {
  hook?.(point);
}
