/**
 * The power-loss scenario: a pool runs on write-logging devices (src/io/log-writes-device.ts)
 * over in-memory copies of its metadata and data files, under a seeded workload of writes,
 * flushes, discards, thin and snapshot creation and deletion. Then crashes are replayed
 * from the log: at every sync boundary and at random points between, with the writes
 * after each device's last completed sync dropped, kept, or a random subset reordered and
 * torn at 512-byte sectors. Each crash image is written to a scratch pool and checked
 * (verify.ts) against the model: what was flushed survives, the rest is old or newer.
 * `sabotage` replays each point from a third of its log instead (a device losing synced
 * writes): the farm's self-test that its checks can fail.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MemoryDevice } from '../../src/io/memory-device';
import { WriteLog, type TailPolicy } from '../../src/io/log-writes-device';
import { Pool } from '../../src/pool/pool';
import { Rand } from '../../support/random';
import { DiskModel, fillPattern, SECTOR } from './model';
import { verifyPool } from './verify';
import type { PointResult } from './farm-types';

const MiB = 1024 * 1024;
const DEV = 2 * MiB;

/** Run one logged workload and check up to `points` crash points of it. */
export async function powerLoss(seed: number, points: number, scratch: string, opts: { sabotage?: boolean } = {}): Promise<PointResult[]> {
  const r = new Rand(seed);
  const dir = path.join(scratch, `pl-${seed}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const created = Pool.create(dir, { dataSize: 8 * MiB, metadataSize: MiB, discard: r.pick(['passdown', 'nopassdown'] as const) });
  await created.close();
  const base = { metadata: new Uint8Array(fs.readFileSync(path.join(dir, 'metadata'))), data: new Uint8Array(fs.readFileSync(path.join(dir, 'data'))) };
  const log = new WriteLog();
  const pool = Pool.open(dir, {
    commitInterval: 0,
    devices: { metadata: log.wrap(MemoryDevice.from(base.metadata, 'metadata'), 'metadata'), data: log.wrap(MemoryDevice.from(base.data, 'data'), 'data') },
  });
  const model = new DiskModel();
  let tag = 1;
  let nextId = 1;
  const live = () => model.ids().filter((id) => model.has(id));
  // pool.json is a host file, not on the logged devices. It gains a device's size (durably)
  // before the device's creation commits and loses it after the deletion does, and open
  // drops sizes of devices the metadata lacks: so at any crash point, the table holding
  // every size ever written is one the pool could have found. Ids are never reused here.
  const sizes: Record<string, { size: number }> = {};
  const noteTable = () => Object.assign(sizes, (JSON.parse(fs.readFileSync(path.join(dir, 'pool.json'), 'utf8')) as { thins: Record<string, { size: number }> }).thins);
  const op = async (fn: () => Promise<void>, record: (start: number, end: number) => void) => {
    const start = log.length;
    await fn();
    noteTable();
    record(start, log.length);
  };
  const steps = 40 + r.int(40);
  for (let i = 0; i < steps; i++) {
    const ids = live();
    const kind = ids.length === 0 ? 'thin' : r.weighted({ write: 50, flush: 14, discard: 10, snap: 8, delete: ids.length > 1 ? 5 : 0, thin: ids.length < 6 ? 4 : 0 });
    if (kind === 'thin') {
      const id = nextId++;
      await op(() => pool.createThin(id, DEV), (s, e) => model.create(id, DEV, s, e));
    } else if (kind === 'snap') {
      const id = nextId++;
      const origin = r.pick(ids);
      await op(() => pool.createSnap(id, origin), (s, e) => model.snap(id, origin, s, e));
    } else if (kind === 'delete') {
      const id = r.pick(ids);
      await op(() => pool.deleteDevice(id), (s, e) => model.delete(id, s, e));
    } else if (kind === 'flush') {
      await op(() => pool.flush(), (s, e) => model.flush(s, e));
    } else {
      const id = r.pick(ids);
      const sectors = DEV / SECTOR;
      const first = r.chance(0.5) ? r.int(sectors - 1) : r.int(sectors / 128) * 128;
      const n = Math.min(sectors - first, kind === 'write' ? 1 + r.int(r.chance(0.3) ? 300 : 24) : 1 + r.int(400));
      if (kind === 'write') {
        const t = tag++;
        const buf = fillPattern(Buffer.alloc(n * SECTOR), t, first);
        await op(() => pool.write(id, first * SECTOR, buf), (s, e) => model.write(id, first * SECTOR, n * SECTOR, t, s, e));
      } else {
        await op(() => pool.discard(id, first * SECTOR, n * SECTOR), (s, e) => model.write(id, first * SECTOR, n * SECTOR, 0, s, e));
      }
    }
  }
  await op(() => pool.close(), (s, e) => model.flush(s, e));

  // Crash points: every sync boundary, then random positions, up to `points`.
  const syncs = log.syncPoints();
  const all = [...new Set([...syncs, ...Array.from({ length: points }, () => 1 + r.int(log.length))])];
  const chosen = r.shuffle(all).slice(0, points).sort((a, b) => a - b);
  const check = path.join(scratch, `pl-${seed}-crash`);
  const out: PointResult[] = [];
  for (const p of chosen) {
    const policy: TailPolicy = r.pick(['drop', 'keep', 'random', 'random'] as const);
    // sabotage (the farm's self-test): replay an earlier point, as a device that lost
    // acknowledged syncs would; the model must notice.
    const images = log.crashImages(base, opts.sabotage ? Math.floor(p / 3) : p, policy, () => r.next());
    fs.rmSync(check, { recursive: true, force: true });
    fs.mkdirSync(check);
    const table = JSON.parse(fs.readFileSync(path.join(dir, 'pool.json'), 'utf8')) as { thins: Record<string, { size: number }> };
    fs.writeFileSync(path.join(check, 'pool.json'), JSON.stringify({ ...table, thins: sizes }, null, 2) + '\n');
    fs.writeFileSync(path.join(check, 'metadata'), images.metadata);
    fs.writeFileSync(path.join(check, 'data'), images.data);
    const failures = await verifyPool(check, model, p);
    out.push({ scenario: 'power-loss', point: `seed ${seed} log ${p}/${log.length} ${policy}${syncs.includes(p) ? ' (sync boundary)' : ''}`, failures });
  }
  fs.rmSync(check, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}
