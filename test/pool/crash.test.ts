/**
 * Crash durability. A child process (fixtures/crash-writer) writes random patterns, discards,
 * snapshots and deletes on a pool, journaling each op before issuing it and each flush once it
 * returned; the parent kills it with SIGKILL at a random moment, many times over the same pool.
 * After every kill:
 *  - checkMetadata, thin_check 1.x and 0.9.0 accept the metadata exactly as the crash left it;
 *  - the dead child's lock is stale and Pool.open takes it over;
 *  - every chunk whose last op was acknowledged by a flush (or a snapshot/delete, which commit)
 *    reads back exactly as the model says; chunks touched after their last acknowledgement
 *    may hold either state and are adopted as read.
 * Replay a run with THINSIM_SEED=<seed>; THINSIM_CRASH_RUNS sets the number of kills (24).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { Rand, pattern } from '../../support/random';
import { ContentModel, MiB, assertBytesMatch, metadataOracles, oracleAvailability, ourCheck, tempDir } from '../helpers/pool-model';
import { seeded, suiteSeeds } from '../helpers/seeds';

const CHILD = path.resolve(__dirname, 'fixtures', 'crash-writer.js');
const RUNS = Number(process.env.THINSIM_CRASH_RUNS ?? 24);

type Entry =
  | { t: 'open' }
  | { t: 'w'; id: number; off: number; len: number; s: number }
  | { t: 'x'; id: number; off: number; len: number }
  | { t: 'F' }
  | { t: 'S'; id: number; origin: number }
  | { t: 'SA'; id: number }
  | { t: 'D'; id: number }
  | { t: 'DA'; id: number }
  | { t: 'T'; id: number; size: number }
  | { t: 'TA'; id: number };

function readJournal(file: string): Entry[] {
  if (!fs.existsSync(file)) return [];
  const out: Entry[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as Entry);
    } catch {
      // A line torn by the kill: the op it announced was never issued.
    }
  }
  return out;
}

function apply(m: ContentModel, e: Entry): void {
  if (e.t === 'w') m.write(e.id, e.off, pattern(e.s, e.len));
  else if (e.t === 'x') m.discard(e.id, e.off, e.len);
}

/** Spawn the crash writer and SIGKILL it `life` ms after it opened the pool (or after the spawn when `early`); returns its pid. */
async function runAndKill(dir: string, journal: string, seed: number, mode: 'data' | 'meta', early: boolean, life: number, run: number): Promise<number> {
  const child = spawn(process.execPath, [CHILD], {
    env: { ...process.env, CRASH_POOL: dir, CRASH_JOURNAL: journal, CRASH_SEED: String(seed), CRASH_MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (b) => { stderr += b; });
  const exited = new Promise<{ code: number | null; signal: string | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  if (!early) {
    // The kill window starts once the child has opened the pool and (data mode) acknowledged
    // its first flush, so a loaded machine (a slow start) still leaves flushes to check.
    let out = '';
    const ready = (o: string) => o.includes('open') && (mode !== 'data' || o.includes('flushed'));
    const flushed = new Promise<void>((res) => child.stdout!.on('data', (b) => { out += b; if (ready(out)) res(); }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((res) => { timer = setTimeout(() => res('timeout'), 60_000); });
    const started = await Promise.race([exited, flushed, timeout]);
    clearTimeout(timer);
    assert.equal(started, undefined, `run ${run}: the child did not open the pool${mode === 'data' ? ' and flush' : ''}: ${JSON.stringify(started)} ${stderr}`);
  } else {
    child.stdout!.resume();
  }
  const died = await Promise.race([exited, new Promise<undefined>((res) => setTimeout(() => res(undefined), life))]);
  assert.equal(died, undefined, `run ${run}: the child died on its own: ${JSON.stringify(died)} ${stderr}`);
  child.kill('SIGKILL');
  const how = await exited;
  assert.equal(how.signal, 'SIGKILL', `run ${run}: ${stderr}`);
  return child.pid!;
}

oracleAvailability(test);

for (const seed of suiteSeeds(1, 8000)) {
  test(`crash durability: ${RUNS} SIGKILLs at random moments, same pool reopened each time (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const dir = tempDir(t, 'thinsim-crash-');
      const meta = path.join(dir, 'metadata');
      const lockFile = path.join(dir, 'pool.lock');
      const first = Pool.create(dir, { dataSize: 64 * MiB, metadataSize: 4 * MiB });
      const cb = first.chunkBytes;
      const model = new ContentModel(cb);
      for (const id of [1, 2, 3]) {
        await first.createThin(id, 4 * MiB);
        model.createThin(id, 4 * MiB);
      }
      await first.close();
      const stats = { opened: 0, takenOver: 0, flushes: 0, acked: 0, dirty: 0, verified: 0, snaps: 0, deletes: 0, sizeBug: 0 };

      for (let run = 0; run < RUNS; run++) {
        const journal = path.join(dir, `journal-${run}`);
        // Most runs: kill 100-400 ms into the child's working life. One in six: kill at any moment
        // from the spawn on (start-up, Pool.open, the first writes).
        const early = run % 6 === 5;
        const life = early ? r.int(400) : 100 + r.int(300);
        const pid = await runAndKill(dir, journal, seed * 1000 + run, 'data', early, life, run);
        const label = `run ${run} (killed ${life} ms ${early ? 'after the spawn' : 'after its first flush'}): `;

        // 1. The metadata exactly as the crash left it.
        metadataOracles(t, meta, label);

        // 2. The dead child's lock is stale and is taken over.
        const entries = readJournal(journal);
        const opened = entries.some((e) => e.t === 'open');
        if (opened) stats.opened++;
        if (fs.existsSync(lockFile)) {
          assert.equal(fs.readFileSync(lockFile, 'utf8').split(' ')[0], String(pid), `${label}the lock file names the dead child`);
          stats.takenOver++;
        } else {
          assert.ok(!opened, `${label}the child opened the pool but left no lock`);
        }
        const pool = Pool.open(dir, { commitInterval: 0 });
        try {
          assert.equal(fs.readFileSync(lockFile, 'utf8').split(' ')[0], String(process.pid), `${label}we hold the lock`);

          // 3. Fold the acknowledged ops into the model; the rest make their chunks uncertain.
          let pending: Entry[] = [];
          let snapIntent: { id: number; origin: number } | undefined;
          let delIntent: number | undefined;
          const ack = () => {
            for (const e of pending) apply(model, e);
            stats.acked += pending.length;
            pending = [];
          };
          for (const e of entries) {
            switch (e.t) {
              case 'w':
              case 'x':
                pending.push(e);
                break;
              case 'F':
                ack();
                stats.flushes++;
                break;
              case 'S':
                snapIntent = e;
                break;
              case 'SA':
                ack();
                model.createSnap(e.id, snapIntent!.origin);
                snapIntent = undefined;
                stats.snaps++;
                break;
              case 'D':
                delIntent = e.id;
                break;
              case 'DA':
                ack();
                model.deleteDevice(e.id);
                delIntent = undefined;
                stats.deletes++;
                break;
            }
          }
          const devices = pool.devices();
          for (const id of devices) {
            if (model.has(id)) assert.equal(pool.deviceSize(id), model.size(id), `${label}size of device ${id} after the crash (pool.json vs the journal)`);
          }
          // A snapshot or delete killed before its ack happened iff the device says so; it committed everything before it.
          if (snapIntent && devices.includes(snapIntent.id)) {
            ack();
            model.createSnap(snapIntent.id, snapIntent.origin);
            const got = pool.deviceSize(snapIntent.id);
            if (got !== model.size(snapIntent.id)) {
              // Known bug, asserted by the create/snap/delete crash test below; go on with the pool's size.
              t.diagnostic(`${label}snapshot ${snapIntent.id} created just before the kill has size ${got}, not its origin's ${model.size(snapIntent.id)}`);
              model.setSize(snapIntent.id, got);
              stats.sizeBug++;
            }
          }
          if (delIntent !== undefined && !devices.includes(delIntent)) {
            ack();
            model.deleteDevice(delIntent);
          }
          assert.deepEqual(devices, model.ids(), `${label}devices after the crash`);
          const dirty = new Set<string>();
          for (const e of pending) {
            if (e.t !== 'w' && e.t !== 'x') continue;
            for (let v = Math.floor(e.off / cb); v * cb < e.off + e.len; v++) dirty.add(`${e.id}:${v}`);
          }

          // 4. Every acknowledged chunk reads back exactly.
          for (const id of model.ids()) {
            const size = model.size(id);
            const got = await pool.read(id, 0, size);
            for (let v = 0; v * cb < size; v++) {
              const bytes = got.subarray(v * cb, (v + 1) * cb);
              if (dirty.has(`${id}:${v}`)) {
                model.adopt(id, v, pool.lookup(id, v) ? Buffer.from(bytes) : undefined);
                stats.dirty++;
              } else {
                assertBytesMatch(bytes, model.read(id, v * cb, cb), `${label}device ${id} chunk ${v} (acknowledged)`, v * cb);
                stats.verified++;
              }
            }
          }
        } finally {
          await pool.close();
        }
      }
      t.diagnostic(`crash stats: ${JSON.stringify(stats)}`);
      assert.ok(stats.opened >= (RUNS * 5) / 6 - 1, `the child opened the pool in only ${stats.opened} of ${RUNS} runs`);
      assert.ok(stats.flushes >= RUNS, `only ${stats.flushes} flushes were acknowledged`);
      assert.ok(stats.acked > 100, `only ${stats.acked} ops were acknowledged`);
      metadataOracles(t, meta, 'final: ');
    });
  });
}

for (const seed of suiteSeeds(1, 8500)) {
  test(`crash during create_thin / create_snap / delete: every device keeps its size and the metadata stays valid (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const dir = tempDir(t, 'thinsim-crash-meta-');
      const meta = path.join(dir, 'metadata');
      const first = Pool.create(dir, { dataSize: 64 * MiB, metadataSize: 4 * MiB });
      // Distinct sizes, so a size that falls back to a default shows.
      const sizes = new Map<number, number>([[1, MiB], [2, 2 * MiB + 512], [3, 3 * MiB]]);
      for (const [id, size] of sizes) await first.createThin(id, size);
      await first.write(2, 0, pattern(seed, 100_000));
      await first.close();
      let ops = 0;
      for (let run = 0; run < 24; run++) {
        const journal = path.join(dir, `journal-${run}`);
        const life = 20 + r.int(200);
        await runAndKill(dir, journal, seed * 1000 + run, 'meta', false, life, run);
        const label = `run ${run} (killed ${life} ms after the open): `;
        // thin_check 1.x costs ~0.5 s a run: our check every time, the external ones every 4th run.
        if (run % 4 === 3) metadataOracles(t, meta, label);
        else ourCheck(meta, label);
        const intents = new Map<number, number>();
        for (const e of readJournal(journal)) {
          if (e.t === 'T') intents.set(e.id, e.size);
          else if (e.t === 'S') intents.set(e.id, sizes.get(e.origin)!);
          else if (e.t === 'TA' || e.t === 'SA') { sizes.set(e.id, intents.get(e.id)!); ops++; }
          else if (e.t === 'DA') { sizes.delete(e.id); ops++; }
        }
        const pool = Pool.open(dir, { commitInterval: 0 });
        try {
          const devices = pool.devices();
          for (const id of devices) {
            const want = sizes.get(id) ?? intents.get(id);
            assert.ok(want !== undefined, `${label}device ${id} exists but was never created`);
            assert.equal(pool.deviceSize(id), want, `${label}size of device ${id} (${sizes.has(id) ? 'acknowledged' : 'created just before the kill'})`);
            sizes.set(id, want);
          }
          for (const id of [...sizes.keys()]) if (!devices.includes(id)) sizes.delete(id);
          assert.ok(devices.includes(1) && devices.includes(2) && devices.includes(3));
          assert.deepEqual(await pool.read(2, 0, 100_000), pattern(seed, 100_000), `${label}device 2 content`);
        } finally {
          await pool.close();
        }
      }
      assert.ok(ops >= 12, `only ${ops} metadata operations were acknowledged`);
    });
  });
}
