/**
 * A child for test/safety/lock.test.ts: `node lock-racer.js race` (forked with an IPC
 * channel) waits for { dir, at } messages; at wall-clock time `at` it opens the pool at
 * `dir` read-write through the public API (Pool.open) and answers { pid, ok: true } or
 * { pid, code, message }. { release: true } closes a pool it holds and answers
 * { released: true }. Loaded by `node --test` without arguments, it does nothing.
 */
import { Pool } from '../../src/pool/pool';

function spinUntil(at: number): void {
  // Busy-wait (not a timer) so every racer calls Pool.open within the same millisecond or so.
  while (Date.now() < at) { /* spin */ }
}

if (process.argv[2] === 'race') {
  let held: Pool | undefined;
  process.on('message', (m: { dir?: string; at?: number; release?: boolean }) => {
    if (m.release) {
      const p = held;
      held = undefined;
      (p ? p.close() : Promise.resolve()).then(
        () => process.send!({ released: true }),
        (e: Error) => process.send!({ released: false, message: e.message }),
      );
      return;
    }
    spinUntil(m.at!);
    try {
      held = Pool.open(m.dir!);
      process.send!({ pid: process.pid, ok: true });
    } catch (e) {
      const err = e as { code?: string; message?: string };
      process.send!({ pid: process.pid, code: err.code, message: err.message });
    }
  });
  process.on('disconnect', () => process.exit(0));
}
