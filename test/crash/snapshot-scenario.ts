/**
 * The snapshot scenario: a child process (snapshot-child.ts) creates and deletes
 * snapshots (deleting origins that have snapshots too), writes and flushes, and is
 * killed with SIGKILL at a random moment. Each line of its journal is one tick of the
 * clock; after the kill every line is read, the pool is checked
 * (verify.ts), and what it holds becomes the next point's base.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from '../../support/oracle-tools';
import { thinsimOk } from '../helpers/cli';
import { Rand } from '../../support/random';
import { DiskModel } from './model';
import { verifyPool } from './verify';
import type { PointResult } from './farm-types';

const DEV = 1024 * 1024;

export async function snapshotScenario(seed: number, points: number, scratch: string): Promise<PointResult[]> {
  const r = new Rand(seed);
  const dir = path.join(scratch, `snapshot-${seed}`);
  fs.rmSync(dir, { recursive: true, force: true });
  thinsimOk(['pool', 'create', dir, '--data-size', '64M', '--metadata-size', '4M']);
  const model = new DiskModel();
  let clock = 1;
  let nextId = 1;
  const out: PointResult[] = [];
  for (let i = 0; i < points; i++) {
    const live = model.ids().filter((id) => model.has(id));
    const journal = path.join(scratch, `snapshot-${seed}.journal`);
    fs.writeFileSync(journal, '');
    const child = spawn(process.execPath, [path.join(repoRoot(), 'dist', 'test', 'crash', 'snapshot-child.js'), dir, String(seed * 1000 + i), String(nextId), live.join(','), String(DEV), journal, String((i + 1) * 1_000_000)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let open: { op: string; id?: number; origin?: number; offset?: number; length?: number; tag?: number; start: number } | undefined;
    const trace: string[] = [];
    const onLine = (line: string) => {
      const t = clock++;
      trace.push(`${t} ${line}`);
      if (line.startsWith('S ')) {
        open = { ...JSON.parse(line.slice(2)), start: t };
        const o = open!;
        // Record at the start with an unknown end: if the kill comes first, it stays unanswered.
        if (o.op === 'thin') { model.create(o.id!, DEV, t, Infinity); nextId = o.id! + 1; }
        if (o.op === 'snap') { model.snap(o.id!, o.origin!, t, Infinity); nextId = o.id! + 1; }
        if (o.op === 'delete') model.delete(o.id!, t, Infinity);
        if (o.op === 'write') model.write(o.id!, o.offset!, o.length!, o.tag!, t, Infinity);
      } else if (line === 'E' && open) {
        model.finish(open.start, t);
        if (open.op === 'flush') model.flush(open.start, t);
        open = undefined;
      }
    };
    const ready = new Promise<void>((res) => child.stdout!.once('data', () => res()));
    child.stdout!.resume();
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    const closed = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    // The kill comes a random time after the workload has opened the pool.
    const early = await Promise.race([closed, ready.then(() => new Promise<'timer'>((res) => setTimeout(() => res('timer'), 20 + r.int(500))))]);
    if (early !== 'timer') {
      out.push({ scenario: 'snapshot', point: `seed ${seed} point ${i}`, failures: [`the workload exited ${early} before the kill: ${err.slice(0, 1000)}`] });
      break;
    }
    child.kill('SIGKILL');
    await closed;
    for (const line of fs.readFileSync(journal, 'utf8').split('\n')) if (line) onLine(line);
    const at = clock++;
    const failures = await verifyPool(dir, model, at, { rebaseAt: clock++ });
    model.flush(clock++, clock++);
    out.push({ scenario: 'snapshot', point: `seed ${seed} point ${i} (clock ${at})`, failures });
    if (failures.length) {
      if (process.env.THINSIM_CRASH_TRACE) fs.writeFileSync(process.env.THINSIM_CRASH_TRACE, `live at start: ${live.join(',')}\n${trace.join('\n')}\n${err}`);
      break;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}
