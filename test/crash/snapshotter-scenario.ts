/**
 * The snapshotter scenario: `thinsim snapshotter` (the real CLI, a child process) serves
 * a pool on a unix socket; a gRPC client (test/containerd/helpers.ts) runs a seeded
 * workload of Prepare (then mounts the returned loop device, writes a file naming the
 * snapshot, unmounts), Commit, Remove and Cleanup, with sync or async remove, until the
 * service is killed with SIGKILL: at a named crash point (`containerd:prepare:1-3`,
 * `containerd:commit:1-4`, `containerd:remove:1-3`, `layers:create:1-4`,
 * `layers:delete:1-4`, through test/helpers/crash-hook.js) or at a random moment (never
 * while the client has a file system of the service mounted: the kill waits for the
 * unmount, so the farm does not strand a mount on a dead NBD server).
 *
 * The model: every snapshot the client saw created, with its kind, parent and the files
 * it must hold (its own and its ancestors'). The request in flight at the kill may have
 * happened or not; the restarted service decides which, and the model follows.
 *
 * After each kill: the metadata as the crash left it passes thinsim check and both
 * thin_checks and the pool opens (verify.ts); Docker's records agree with the pool, an
 * open transaction aside (docker-records.ts). Then the service is restarted without the
 * hook: List equals the model (names, kinds, parents); a snapshot whose Remove was killed
 * and that is still listed is removed again (its content is not checked: the Remove may
 * have discarded part of it before the kill); committed snapshots keep their content (the
 * newest and one other are viewed, mounted read-only and read back);
 * Cleanup runs; the service stops on SIGTERM; then every device record has its device
 * and no device lacks a record, no transaction is open, the device records are exactly
 * the snapshots' plus the base (Cleanup removed the orphans), every label record
 * (docker/containerd/snapshots.json) names a snapshot, no mount or loop device of
 * the killed service is left, and the metadata checks pass again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mountsUnder } from '../../src/mounts';
import { runTool } from '../../src/tools';
import { Rand } from '../../support/random';
import { CRASH_HOOK } from '../helpers/crash-hook';
import { thinsimOk } from '../helpers/cli';
import { SnapshotsClient } from '../containerd/helpers';
import { startSnapshotterProcess, type SnapshotterProcess } from '../containerd/snapshotter-process';
import { checkDockerRecords } from './docker-records';
import { DiskModel } from './model';
import { verifyPool } from './verify';
import type { PointResult } from './farm-types';

type Kind = 'active' | 'committed';
interface Snap { kind: Kind; parent: string; files: Map<string, string> }
type InFlight = { op: 'prepare'; key: string; parent: string } | { op: 'commit'; key: string; name: string } | { op: 'remove'; key: string } | { op: 'cleanup' };

const NAMED: Array<[string, InFlight['op']]> = [
  ...[1, 2, 3].map((n) => [`containerd:prepare:${n}`, 'prepare'] as [string, InFlight['op']]),
  ...[1, 2, 3, 4].map((n) => [`layers:create:${n}`, 'prepare'] as [string, InFlight['op']]),
  ...[1, 2, 3, 4].map((n) => [`containerd:commit:${n}`, 'commit'] as [string, InFlight['op']]),
  ...[1, 2, 3].map((n) => [`containerd:remove:${n}`, 'remove'] as [string, InFlight['op']]),
  ...[1, 2, 3, 4].map((n) => [`layers:delete:${n}`, 'remove'] as [string, InFlight['op']]),
];

/** The loop devices whose backing file lies under `dir` (a killed service's nbdfuse files). */
function loopsUnder(dir: string): string[] {
  let names: string[] = [];
  try { names = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop')); } catch { return []; } // no sysfs: nothing to find
  return names.filter((n) => {
    try {
      return fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim().startsWith(dir + '/');
    } catch {
      return false; // not attached
    }
  }).map((n) => `/dev/${n}`);
}

async function sh(cmd: string, args: string[]): Promise<void> {
  const r = await runTool(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
}

function content(key: string, seed: number): string {
  return `${key} of seed ${seed}\n`.repeat(200);
}

interface World {
  seed: number;
  dir: string;
  tmp: string;
  sock: string;
  asyncRemove: boolean;
  model: Map<string, Snap>;
  next: number;
}

function start(w: World, env: NodeJS.ProcessEnv = {}, preload: string[] = []): Promise<SnapshotterProcess> {
  fs.rmSync(w.sock, { force: true });
  return startSnapshotterProcess(w.dir, w.sock, ['--base-image-size', '32M', ...(w.asyncRemove ? ['--async-remove'] : [])], { TMPDIR: w.tmp, ...env }, preload);
}

/** The workload against a hooked (or timed) service: returns the request in flight when it died, if any. */
async function workload(w: World, r: Rand, c: SnapshotsClient, favour: InFlight['op'] | undefined, killer: { mounted: boolean; dead: boolean }): Promise<{ inFlight?: InFlight; ops: number }> {
  const mnt = path.join(w.tmp, 'mnt');
  let ops = 0;
  for (; ops < 40 && !killer.dead; ops++) {
    const committed = [...w.model].filter(([, s]) => s.kind === 'committed').map(([k]) => k);
    const active = [...w.model].filter(([, s]) => s.kind === 'active').map(([k]) => k);
    const leaves = [...w.model.keys()].filter((k) => ![...w.model.values()].some((s) => s.parent === k));
    const weights = { prepare: w.model.size < 8 ? 35 : 5, commit: active.length ? 30 : 0, remove: leaves.length ? (w.model.size > 5 ? 35 : 15) : 0, cleanup: 5 };
    let op = r.weighted(weights) as InFlight['op'];
    if (favour && r.chance(0.6) && weights[favour] > 0) op = favour;
    if (op === 'remove' && favour === 'remove' && w.asyncRemove && r.chance(0.5)) op = 'cleanup'; // async: Cleanup deletes the devices
    let f: InFlight;
    try {
      if (op === 'prepare') {
        const parent = committed.length && r.chance(0.8) ? r.pick(committed) : '';
        const key = `a${w.next++}`;
        f = { op, key, parent };
        const mounts = (await c.call('Prepare', { key, parent, labels: { farm: String(w.seed) } })).mounts as Array<{ type: string; source: string; options: string[] }>;
        const files = new Map(parent ? w.model.get(parent)!.files : []);
        w.model.set(key, { kind: 'active', parent, files });
        // Write a file through the returned mount; the kill waits until it is unmounted.
        killer.mounted = true;
        fs.mkdirSync(mnt, { recursive: true });
        await sh('mount', ['-t', mounts[0].type, '-o', mounts[0].options.join(','), mounts[0].source, mnt]);
        try {
          const name = `f-${key}`;
          const fd = await fs.promises.open(path.join(mnt, name), 'w');
          await fd.writeFile(content(key, w.seed));
          await fd.sync();
          await fd.close();
          files.set(name, content(key, w.seed));
        } finally {
          await sh('umount', [mnt]);
          killer.mounted = false;
        }
      } else if (op === 'commit') {
        const key = r.pick(active);
        const name = `c${w.next++}`;
        f = { op, key, name };
        await c.call('Commit', { name, key, labels: {} });
        const s = w.model.get(key)!;
        w.model.delete(key);
        w.model.set(name, { ...s, kind: 'committed' });
      } else if (op === 'remove') {
        const key = r.pick(leaves);
        f = { op, key };
        await c.call('Remove', { key });
        w.model.delete(key);
      } else {
        f = { op };
        await c.call('Cleanup', {});
      }
    } catch (e) {
      if (killer.mounted) throw e; // the mount step failed with the service alive: a real failure
      return { inFlight: f!, ops };
    }
  }
  return { ops };
}

interface Listed { name: string; kind: string; parent: string }

/** Fold the restarted service's List into the model, resolving the request in flight; the differences left. */
function reconcile(w: World, listed: Listed[], f: InFlight | undefined): string[] {
  const got = new Map(listed.map((l) => [l.name, l]));
  if (f?.op === 'prepare' && got.has(f.key) && !w.model.has(f.key)) {
    w.model.set(f.key, { kind: 'active', parent: f.parent, files: new Map(f.parent ? w.model.get(f.parent)!.files : []) });
  }
  if (f?.op === 'commit' && w.model.has(f.key) && got.has(f.name) && !got.has(f.key)) {
    const s = w.model.get(f.key)!;
    w.model.delete(f.key);
    w.model.set(f.name, { ...s, kind: 'committed' });
  }
  if (f?.op === 'remove' && w.model.has(f.key) && !got.has(f.key)) w.model.delete(f.key);
  const fails: string[] = [];
  for (const [k, s] of w.model) {
    const l = got.get(k);
    if (!l) fails.push(`List lacks ${k} (${s.kind}, parent ${s.parent || '-'})`);
    else if (l.kind.toLowerCase() !== s.kind || l.parent !== s.parent) fails.push(`List has ${k} as ${l.kind.toLowerCase()} on ${l.parent || '-'}; the model says ${s.kind} on ${s.parent || '-'}`);
  }
  for (const k of got.keys()) if (!w.model.has(k)) fails.push(`List has ${k}, which the model does not (request in flight: ${JSON.stringify(f ?? null)})`);
  return fails;
}

/** View a committed snapshot, mount it read-only, compare its files with the model's. */
async function checkContent(w: World, c: SnapshotsClient, name: string): Promise<string[]> {
  const want = w.model.get(name)!.files;
  const key = `v${w.next++}`;
  const mnt = path.join(w.tmp, 'view');
  const m = (await c.call('View', { key, parent: name, labels: {} })).mounts[0] as { type: string; source: string; options: string[] };
  const fails: string[] = [];
  fs.mkdirSync(mnt, { recursive: true });
  await sh('mount', ['-t', m.type, '-o', m.options.join(','), m.source, mnt]);
  try {
    const have = new Set((await fs.promises.readdir(mnt)).filter((n) => n.startsWith('f-')));
    for (const [file, text] of want) {
      if (!have.has(file)) { fails.push(`committed ${name} lacks ${file}`); continue; }
      const got = await fs.promises.readFile(path.join(mnt, file), 'utf8');
      if (got !== text) fails.push(`committed ${name}: ${file} holds ${got.length} bytes that differ from the ${text.length} written`);
    }
    for (const file of have) if (!want.has(file)) fails.push(`committed ${name} holds ${file}, which it never had`);
  } finally {
    await sh('umount', [mnt]);
  }
  await c.call('Remove', { key });
  return fails;
}

export async function snapshotterScenario(seed: number, points: number, scratch: string): Promise<PointResult[]> {
  const r = new Rand(seed);
  const w: World = {
    seed, dir: path.join(scratch, `snapshotter-${seed}`), tmp: path.join(scratch, `snapshotter-${seed}-tmp`),
    sock: path.join(scratch, `snapshotter-${seed}.sock`), asyncRemove: r.chance(0.3), model: new Map(), next: 1,
  };
  fs.rmSync(w.dir, { recursive: true, force: true });
  fs.mkdirSync(w.tmp, { recursive: true });
  thinsimOk(['pool', 'create', w.dir, '--data-size', '512M', '--metadata-size', '16M']);
  const empty = new DiskModel();
  const out: PointResult[] = [];
  for (let i = 0; i < points; i++) {
    const fails: string[] = [];
    const notes: string[] = [];
    let named: [string, InFlight['op']] | undefined;
    let killAfter: number | undefined;
    if (r.chance(0.6)) named = r.pick(NAMED);
    else killAfter = 200 + r.int(2500);
    const what = named ? named[0] : `random kill after ${killAfter} ms`;
    const label = `seed ${seed} point ${i}${w.asyncRemove ? ' (async remove)' : ''}: ${what}`;
    const killer = { mounted: false, dead: false };
    let svc: SnapshotterProcess;
    try {
      svc = await start(w, named ? { THINSIM_CRASH_AT: named[0] } : {}, [CRASH_HOOK]);
    } catch (e) {
      out.push({ scenario: 'snapshotter', point: label, failures: [`the service does not start: ${(e as Error).message}`] });
      break;
    }
    void svc.exited(3_600_000).then(() => { killer.dead = true; });
    const timer = killAfter === undefined ? undefined : setTimeout(function fire() {
      if (killer.mounted) { setTimeout(fire, 20); return; } // never under a mounted file system
      svc.child.kill('SIGKILL');
    }, killAfter);
    const c = new SnapshotsClient(w.sock);
    let result: { inFlight?: InFlight; ops: number } = { ops: 0 };
    try {
      result = await workload(w, r, c, named?.[1], killer);
    } catch (e) {
      fails.push(`the workload failed with the service alive: ${(e as Error).message}`);
    } finally {
      c.close();
      if (timer) clearTimeout(timer);
    }
    const ended = await svc.exited(killAfter === undefined ? 30_000 : 5_000);
    if (!ended || ended.signal !== 'SIGKILL') {
      if (named) notes.push(`not reached in ${result.ops} requests`);
      else notes.push(`finished ${result.ops} requests before the kill`);
      if (!ended) await svc.stop('SIGKILL');
    }
    const mine = [...mountsUnder(path.join(w.tmp, 'mnt')), ...mountsUnder(path.join(w.tmp, 'view'))];
    if (mine.length) fails.push(`the client left a mount: ${mine.join(', ')}`);
    fails.push(...(await verifyPool(w.dir, empty, 0)).map((f) => `as left by the crash: ${f}`));
    fails.push(...checkDockerRecords(w.dir, { inFlight: true }).fails.map((f) => `as left by the crash: ${f}`));
    // Restart without the hook: the model, the content, Cleanup.
    if (!fails.length) {
      try {
        const again = await start(w);
        const c2 = new SnapshotsClient(w.sock);
        try {
          const listed = (await c2.list()) as Listed[];
          fails.push(...reconcile(w, listed, result.inFlight));
          // A Remove killed while it discarded the device's blocks (before its device
          // transaction) leaves the snapshot listed with some blocks discarded, as
          // containerd's devmapper and Docker's driver do: the client retries the Remove.
          const f = result.inFlight;
          if (!fails.length && f?.op === 'remove' && w.model.has(f.key)) {
            await c2.call('Remove', { key: f.key });
            w.model.delete(f.key);
            notes.push('the killed Remove retried');
          }
          const committed = [...w.model].filter(([, s]) => s.kind === 'committed').map(([k]) => k);
          const check = new Set(committed.slice(-1));
          if (committed.length > 1) check.add(r.pick(committed));
          if (!fails.length) for (const n of check) fails.push(...(await checkContent(w, c2, n)));
          await c2.call('Cleanup', {});
        } finally {
          c2.close();
          const stopped = await again.stop('SIGTERM');
          if (stopped.code !== 0) fails.push(`the restarted service did not stop cleanly on SIGTERM: ${stopped.code ?? stopped.signal}: ${again.stderr().trim().slice(-300)}`);
        }
      } catch (e) {
        fails.push(`after the restart: ${(e as Error).message}`);
      }
      const left = loopsUnder(w.tmp);
      if (left.length) fails.push(`loop devices of the killed service are left: ${left.join(', ')}`);
      if (mountsUnder(w.tmp).length) fails.push(`mounts are left: ${mountsUnder(w.tmp).join(', ')}`);
      const st = checkDockerRecords(w.dir, { inFlight: false });
      fails.push(...st.fails.map((f) => `after the restart: ${f}`));
      if (st.state.temporary.length) notes.push(`${st.state.temporary.length} temporary file(s) of interrupted writes stay beside the records`);
      const named2 = new Set([...st.state.layers.values()].map((l) => l.cacheId));
      for (const h of st.state.records.keys()) if (h !== '' && !named2.has(h)) fails.push(`after Cleanup: device record ${h.slice(0, 12)} names no snapshot (an orphan Cleanup left)`);
      const labelFile = path.join(w.dir, 'docker', 'containerd', 'snapshots.json');
      const labelled = fs.existsSync(labelFile) ? Object.keys((JSON.parse(fs.readFileSync(labelFile, 'utf8')) as { snapshots: object }).snapshots) : [];
      for (const k of labelled) if (!st.state.layers.has(k)) fails.push(`after the restart: the snapshotter's record of ${k} outlives its snapshot`);
      const keys = [...st.state.layers.keys()].sort();
      if (JSON.stringify(keys) !== JSON.stringify([...w.model.keys()].sort())) fails.push(`after the restart the index holds ${keys.join(',')}; the model ${[...w.model.keys()].sort().join(',')}`);
      fails.push(...(await verifyPool(w.dir, empty, 0)).map((f) => `at the end of the point: ${f}`));
    }
    if (result.inFlight) notes.push(`in flight: ${result.inFlight.op}`);
    out.push({ scenario: 'snapshotter', point: `${label} (${notes.join('; ') || 'killed'})`, failures: fails });
    if (fails.length) break;
  }
  fs.rmSync(w.sock, { force: true });
  const left = mountsUnder(w.tmp);
  if (left.length && out.length) {
    // Never remove a directory through a mount: the last point fails, naming what is left.
    out[out.length - 1].failures.push(`mounts are left under ${w.tmp} after the run: ${left.join(', ')}`);
    return out;
  }
  fs.rmSync(w.dir, { recursive: true, force: true });
  fs.rmSync(w.tmp, { recursive: true, force: true });
  return out;
}
