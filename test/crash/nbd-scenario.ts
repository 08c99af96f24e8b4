/**
 * The nbd and discard scenarios: `thinsim serve` (a child process) is killed with SIGKILL
 * while several connections issue writes (plain and FUA), flushes, trims and write-zeroes
 * on an origin and its snapshots. Each connection owns its own 64 KiB chunks and waits
 * for each reply before the next request, so every sector's history has one order; the
 * clock counts sends and replies across connections. After the kill, the pool is checked
 * (verify.ts) and what it holds becomes the base for the next point; snapshots are taken
 * between points with the CLI. `discard` runs the same with mostly whole-chunk trims and
 * zeroing on a passdown pool, so chunks are unmapped and punched out of the data file
 * while the server dies.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { call, connect, type Session } from '../nbd/helpers';
import { repoRoot } from '../../support/oracle-tools';
import { thinsimOk } from '../helpers/cli';
import { Rand } from '../../support/random';
import { DiskModel, fillPattern, SECTOR } from './model';
import { verifyPool } from './verify';
import type { PointResult } from './farm-types';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const DEV = 4 * MiB;
const CONNECTIONS = 3;
const Cmd = { WRITE: 1, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 };
const Flag = { FUA: 1, NO_HOLE: 2 };

export type NbdFlavour = 'nbd' | 'discard';

/** Serve, let `CONNECTIONS` clients work, SIGKILL after a random delay; returns the kill's clock. */
async function onePoint(dir: string, model: DiskModel, r: Rand, clock: { t: number; tag: number }, flavour: NbdFlavour): Promise<number> {
  const socket = path.join(dir, '..', `crash-${process.pid}.sock`);
  const child = spawn(process.execPath, [path.join(repoRoot(), 'bin', 'thinsim.js'), 'serve', dir, '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((res) => child.on('close', () => res()));
  let err = '';
  child.stderr!.on('data', (c) => (err += c));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('close', (code) => reject(new Error(`thinsim serve exited ${code} before serving: ${err}`)));
  });
  const ids = model.ids().filter((id) => model.has(id));
  let killed = false;
  const worker = async (k: number) => {
    const sessions = new Map<number, Session>();
    try {
      for (const id of ids) sessions.set(id, await connect(socket, String(id), { structured: false }));
    } catch {
      return; // the kill came before this connection was up: it issued nothing
    }
    while (!killed) {
      const id = r.pick(ids);
      const s = sessions.get(id)!;
      const chunks = DEV / CHUNK;
      const chunk = k + CONNECTIONS * r.int(Math.floor((chunks - 1 - k) / CONNECTIONS) + 1);
      const whole = flavour === 'discard' ? r.chance(0.7) : r.chance(0.3);
      const first = whole ? 0 : r.int(CHUNK / SECTOR - 1);
      const n = whole ? CHUNK / SECTOR : 1 + r.int(CHUNK / SECTOR - first);
      const offset = chunk * CHUNK + first * SECTOR;
      const w = flavour === 'discard' ? { write: 35, fua: 10, flush: 10, trim: 30, zero: 15 } : { write: 45, fua: 15, flush: 15, trim: 15, zero: 10 };
      const kind = r.weighted(w);
      const start = clock.t++;
      let ok = false;
      try {
        if (kind === 'flush') {
          ok = (await call(s, Cmd.FLUSH, 0, 0)).error === 0;
          if (ok) model.flush(start, clock.t++);
          continue;
        }
        if (kind === 'write' || kind === 'fua') {
          const tag = clock.tag++;
          const payload = fillPattern(Buffer.alloc(n * SECTOR), tag, offset / SECTOR);
          const reply = call(s, Cmd.WRITE, offset, payload.length, { flags: kind === 'fua' ? Flag.FUA : 0, payload });
          let end = Infinity;
          try {
            ok = (await reply).error === 0;
            if (ok) end = clock.t++;
          } finally {
            model.write(id, offset, n * SECTOR, tag, start, end, kind === 'fua');
          }
          continue;
        }
        const cmd = kind === 'trim' ? Cmd.TRIM : Cmd.WRITE_ZEROES;
        const flags = kind === 'zero' && r.chance(0.3) ? Flag.NO_HOLE : 0;
        let end = Infinity;
        try {
          ok = (await call(s, cmd, offset, n * SECTOR, { flags })).error === 0;
          if (ok) end = clock.t++;
        } finally {
          model.write(id, offset, n * SECTOR, 0, start, end);
        }
      } catch {
        break; // the server is gone: this request was never answered (recorded above)
      }
    }
    for (const s of sessions.values()) s.w.end();
  };
  const workers = Array.from({ length: CONNECTIONS }, (_, k) => worker(k));
  await new Promise((res) => setTimeout(res, 60 + r.int(440)));
  killed = true;
  const at = clock.t++;
  child.kill('SIGKILL');
  await exited;
  await Promise.all(workers);
  fs.rmSync(socket, { force: true });
  return at;
}

export async function nbdScenario(flavour: NbdFlavour, seed: number, points: number, scratch: string): Promise<PointResult[]> {
  const r = new Rand(seed);
  const dir = path.join(scratch, `${flavour}-${seed}`);
  fs.rmSync(dir, { recursive: true, force: true });
  thinsimOk(['pool', 'create', dir, '--data-size', '64M', '--metadata-size', '4M', '--discard', flavour === 'discard' ? 'passdown' : r.pick(['passdown', 'nopassdown'])]);
  thinsimOk(['thin', 'create', dir, '1', '--size', String(DEV)]);
  const model = new DiskModel();
  const clock = { t: 1, tag: 1 };
  model.create(1, DEV, 0, 0);
  model.flush(1, 1);
  const out: PointResult[] = [];
  let nextId = 2;
  for (let i = 0; i < points; i++) {
    if (i > 0 && nextId <= 3 && (i === 1 || i === 3)) {
      const origin = nextId - 1;
      thinsimOk(['thin', 'snap', dir, String(nextId), String(origin)]);
      const t = clock.t++;
      model.snap(nextId, origin, t, t);
      model.flush(t, clock.t++);
      nextId++;
    }
    const at = await onePoint(dir, model, r, clock, flavour);
    const base = clock.t++;
    const failures = await verifyPool(dir, model, at, { rebaseAt: base });
    model.flush(clock.t++, clock.t++);
    out.push({ scenario: flavour, point: `seed ${seed} point ${i} (clock ${at})`, failures });
    if (failures.length) break; // the model's base is unknown after a failure
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}
