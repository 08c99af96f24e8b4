/**
 * The layers scenario: the real CLI (`thinsim image import`, `image rm`, `container
 * create`, `container rm`) on a pool with an ext4 base device, killed with SIGKILL either
 * at a named crash point (the hook of test/helpers/crash-hook.js: each step of Docker's
 * device transaction, `layers:create:1-4` and `layers:delete:1-4`, at the Nth device
 * of the operation; the layerdb write, `layers:layerdb:1-2`; the import's, image
 * removal's and container's own steps, `image:import:1-4`, `image:rm:1-3`,
 * `container:create:1-3`, `container:rm:1-3`) or at a random moment. The image is a
 * docker-archive of four layers made by umoci and skopeo (test/layers/image-fixtures.ts).
 *
 * After each kill: the metadata as the crash left it passes thinsim check and both
 * thin_checks and the pool opens (verify.ts); Docker's records agree with the pool, an open
 * transaction aside (docker-records.ts, inFlight); then the store is opened read-write
 * (the next user: it rolls back the transaction and removes the dead import's scratch
 * layer and mounts), no mount of the killed process is left, and the records agree with
 * no exception. After a killed import, the import is run again: it must succeed, report
 * the ChainIDs of chainIdModel over the diff IDs skopeo reads from the archive, and the
 * image's top layer, mounted, must hold the tree `umoci unpack` makes of the same image
 * (layers a crash left behind are shared by that run, so their content is checked too;
 * half the time the import point first removes such leftovers, so that every named point
 * of the import is reached).
 * `container create` and `container rm` are atomic across a kill (src/layers/scratch.ts):
 * after the reopen, container layers without a container record, a container record
 * whose layers are gone, and any temporary file or directory of an interrupted write
 * are failures, whatever the operation killed.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LayerStore } from '../../src/layers/snapshotter';
import { mountsUnder } from '../../src/mounts';
import { repoRoot } from '../../support/oracle-tools';
import { Rand } from '../../support/random';
import { CRASH_HOOK } from '../helpers/crash-hook';
import { thinsimOk } from '../helpers/cli';
import { buildFixture, compareTrees, missingMount, missingTools, skopeoConfig, walkTree } from '../layers/image-fixtures';
import { chainIdModel, checkDockerRecords, interruptedUnder } from './docker-records';
import { DiskModel } from './model';
import { verifyPool } from './verify';
import type { PointResult } from './farm-types';

const BASE = '64M';

type Op = 'import' | 'rmi' | 'create' | 'rm';

/** Named points per operation, with how many times each is reached (the hook's N is drawn up to it). */
const POINTS: Record<Op, Array<[string, number]>> = {
  import: [
    ...[1, 2, 3, 4].map((n) => [`layers:create:${n}`, 4] as [string, number]),
    ['layers:layerdb:1', 4], ['layers:layerdb:2', 4],
    ['image:import:1', 4], ['image:import:2', 4], ['image:import:3', 1], ['image:import:4', 1],
  ],
  rmi: [...[1, 2, 3, 4].map((n) => [`layers:delete:${n}`, 4] as [string, number]), ['image:rm:1', 1], ['image:rm:2', 1], ['image:rm:3', 4]],
  create: [...[1, 2, 3, 4].map((n) => [`layers:create:${n}`, 2] as [string, number]), ['container:create:1', 1], ['container:create:2', 1], ['container:create:3', 1]],
  rm: [...[1, 2, 3, 4].map((n) => [`layers:delete:${n}`, 2] as [string, number]), ['container:rm:1', 1], ['container:rm:2', 1], ['container:rm:3', 2]],
};

interface Fixture { archive: string; diffIds: string[]; imageId: string; rootfs: string }

let fixture: Fixture | undefined;

/** Why the scenario cannot run here (it needs root, loop mounts, umoci and skopeo), or undefined. */
export function layersMissing(): string | undefined {
  return missingTools() ?? missingMount();
}

/** The test image, built once per process under `scratch`; its diff IDs and image ID as skopeo reads them. */
function image(scratch: string): Fixture {
  if (fixture && fs.existsSync(fixture.archive)) return fixture;
  const work = path.join(scratch, 'layers-image');
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const f = buildFixture(work);
  const cfg = skopeoConfig(`docker-archive:${f.dockerArchive.app}`);
  fixture = { archive: f.dockerArchive.app, diffIds: cfg.diffIds, imageId: cfg.configDigest, rootfs: f.rootfs.app };
  return fixture;
}

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string }

/** Run the CLI with the crash hook; kill it at `point` (Nth time) or after `killAfter` ms. */
function runCli(args: string[], tmp: string, crash: { point?: string; nth?: number; killAfter?: number }): Promise<Run> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
    delete env.THINSIM_CRASH_AT;
    if (crash.point) Object.assign(env, { THINSIM_CRASH_AT: crash.point, THINSIM_CRASH_NTH: String(crash.nth ?? 1) });
    const child = spawn(process.execPath, ['--require', CRASH_HOOK, path.join(repoRoot(), 'bin', 'thinsim.js'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = crash.killAfter === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), crash.killAfter);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The layers of the image's chain (by ChainID) present in the store, top down. */
function chainLayers(store: LayerStore, chain: string[]): string[] {
  const byChain = new Map(store.list().filter((l) => l.chainId).map((l) => [l.chainId!, l.name]));
  return [...chain].reverse().map((c) => byChain.get(c)).filter((n): n is string => n !== undefined);
}

export async function layersScenario(seed: number, points: number, scratch: string): Promise<PointResult[]> {
  const r = new Rand(seed);
  const fx = image(scratch);
  const chain = chainIdModel(fx.diffIds);
  const dir = path.join(scratch, `layers-${seed}`);
  const tmp = path.join(scratch, `layers-${seed}-tmp`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  thinsimOk(['pool', 'create', dir, '--data-size', '512M', '--metadata-size', '16M']);
  const out: PointResult[] = [];
  const empty = new DiskModel();
  let containers = 0;
  for (let i = 0; i < points; i++) {
    const fails: string[] = [];
    const notes: string[] = [];
    // The state, from the records: is the image there, which containers exist.
    const before = checkDockerRecords(dir, { inFlight: false }).state;
    const haveImage = before.images.some((im) => im.id === fx.imageId);
    const op: Op = !haveImage ? 'import' : r.pick(['rmi', 'create', 'rm', 'rm'] as Op[]);
    // Set-up without a crash: `container rm` needs a container, `image rm` none.
    if (op === 'rm' && before.mounts.length === 0) {
      const made = await runCli(['container', 'create', dir, fx.imageId, `c${++containers}`], tmp, {});
      if (made.code !== 0) fails.push(`setting up: container create failed: exit ${made.code}: ${made.stderr.trim().slice(0, 300)}`);
    }
    if (op === 'rmi') {
      for (const m of before.mounts) {
        const gone = await runCli(['container', 'rm', dir, m.containerId], tmp, {});
        if (gone.code !== 0) fails.push(`setting up: container rm failed: exit ${gone.code}: ${gone.stderr.trim().slice(0, 300)}`);
      }
    }
    const mounts = checkDockerRecords(dir, { inFlight: false }).state.mounts;
    // An earlier crash may have left part of the chain without its image. Half the time it
    // is removed first, so every point of the import is reached; otherwise the import shares
    // what is there (and a named point may not be reached: the import makes fewer layers).
    const partial = op === 'import' && before.layers.size > 0 && [...before.layers.values()].some((l) => l.chainId && chain.includes(l.chainId));
    const preclean = partial && r.chance(0.5);
    if (preclean) {
      const s = await LayerStore.open(dir, { commitInterval: 0 });
      try {
        for (const n of chainLayers(s, chain)) await s.remove(n);
      } finally {
        await s.close();
      }
    }
    const args = op === 'import' ? ['image', 'import', dir, fx.archive, '--base-size', BASE, '--json']
      : op === 'rmi' ? ['image', 'rm', dir, fx.imageId]
        : op === 'create' ? ['container', 'create', dir, fx.imageId, `c${++containers}`]
          : ['container', 'rm', dir, mounts.length ? r.pick(mounts).containerId : 'none'];
    let crash: { point?: string; nth?: number; killAfter?: number };
    let what: string;
    if (r.chance(0.65)) {
      const [point, times] = r.pick(POINTS[op]);
      crash = { point, nth: 1 + r.int(times - 1) };
      what = `${point}#${crash.nth}`;
    } else {
      crash = { killAfter: op === 'import' ? 300 + r.int(2500) : 250 + r.int(900) }; // the CLI takes about 300 ms to start
      what = `random kill after ${crash.killAfter} ms`;
    }
    const run = await runCli(args, tmp, crash);
    const label = `seed ${seed} point ${i}: ${op === 'rmi' ? 'image rm' : op === 'create' ? 'container create' : op === 'rm' ? 'container rm' : 'image import'} at ${what}`;
    if (run.signal !== 'SIGKILL') {
      if (crash.point && run.code === 0 && partial && !preclean) notes.push('not reached: the import shared layers already there');
      else if (crash.point) fails.push(`the CLI was not killed at ${what}: it exited ${run.code} (${run.stderr.trim().slice(0, 400)})`);
      else if (run.code !== 0) fails.push(`the CLI failed before the kill: exit ${run.code} (${run.stderr.trim().slice(0, 400)})`);
      else notes.push('finished before the kill');
    }
    // As the crash left it.
    fails.push(...(await verifyPool(dir, empty, 0)).map((f) => `as left by the crash: ${f}`));
    fails.push(...checkDockerRecords(dir, { inFlight: true }).fails.map((f) => `as left by the crash: ${f}`));
    // The next user opens the store read-write.
    try {
      const s = await LayerStore.open(dir, { commitInterval: 0 });
      try {
        const rec = s.recovery!;
        if (rec.rolledBack) notes.push(`rolled back ${rec.rolledBack.device_hash ? rec.rolledBack.device_hash.slice(0, 12) : 'base'}`);
        if (rec.abandoned?.length) notes.push(`removed ${rec.abandoned.length} scratch layer(s)`);
        if (rec.adopted?.length) notes.push(`kept ${rec.adopted.length} scratch layer(s) whose work had committed`);
        if (rec.interrupted?.length) notes.push(`removed ${rec.interrupted.length} temporary file(s) of interrupted writes`);
        if (s.staleMounts.length) notes.push(`cleaned ${s.staleMounts.length} stale mount piece(s)`);
        const left = mountsUnder(tmp);
        if (left.length) fails.push(`mounts of the killed process are left after the reopen: ${left.join(', ')}`);
        // Container layers without a container record.
        const named = new Set(checkDockerRecords(dir, { inFlight: true }).state.mounts.flatMap((m) => [m.mountId, m.initId]));
        const orphans = s.list().filter((l) => /^[0-9a-f]{64}(-init)?$/.test(l.name) && !named.has(l.name)).map((l) => l.name);
        if (orphans.length) fails.push(`container layers without a container after the reopen: ${orphans.map((o) => o.slice(0, 12)).join(', ')} (after ${op})`);
        const owned = s.list().filter((l) => s.records.readIndex().layers[l.name]?.owner).map((l) => l.name);
        if (owned.length) fails.push(`scratch layers are left after the reopen: ${owned.map((o) => o.slice(0, 12)).join(', ')}`);
      } finally {
        await s.close();
      }
    } catch (e) {
      fails.push(`the store does not reopen read-write: ${(e as Error).message}`);
    }
    // Container records whose layers are gone.
    const names = new Set(checkDockerRecords(dir, { inFlight: true }).state.layers.keys());
    for (const m of checkDockerRecords(dir, { inFlight: true }).state.mounts) {
      if (!names.has(m.mountId) || !names.has(m.initId)) fails.push(`container ${m.containerId.slice(0, 12)} names layers that do not exist (after ${op})`);
    }
    const reopened = checkDockerRecords(dir, { inFlight: false });
    fails.push(...reopened.fails.map((f) => `after the reopen: ${f}`));
    const leftovers = [...reopened.state.temporary, ...interruptedUnder(dir)];
    if (leftovers.length) fails.push(`after the reopen, temporary files of interrupted writes are left: ${leftovers.join(', ')}`);
    if (op === 'import') {
      const again = await runCli(['image', 'import', dir, fx.archive, '--base-size', BASE, '--json'], tmp, {});
      if (again.code !== 0) fails.push(`the import run again failed: exit ${again.code}: ${again.stderr.trim().slice(0, 400)}`);
      else {
        const rep = JSON.parse(again.stdout) as { images: Array<{ id: string; layers: Array<{ chainId: string; diffId: string }> }> };
        const got = rep.images[0]?.layers.map((l) => l.chainId) ?? [];
        if (JSON.stringify(got) !== JSON.stringify(chain)) fails.push(`the import run again reports ChainIDs ${got.map((c) => c.slice(7, 19))}; Docker's definition over skopeo's diff IDs gives ${chain.map((c) => c.slice(7, 19))}`);
        if (rep.images[0]?.id !== fx.imageId) fails.push(`the import run again reports image ${rep.images[0]?.id}; skopeo says ${fx.imageId}`);
        const st = checkDockerRecords(dir, { inFlight: false });
        fails.push(...st.fails.map((f) => `after the import run again: ${f}`));
        for (const c of chain) if (!st.state.layerdb.has(c)) fails.push(`after the import run again: layerdb has no ${c.slice(7, 19)}`);
        // The image's top layer holds exactly the tree umoci unpacks from the same image.
        const s = await LayerStore.open(dir, { commitInterval: 0 });
        try {
          const got = await s.withMounted(chain[chain.length - 1], (d) => walkTree(d), { readOnly: true });
          const diff = compareTrees(await walkTree(fx.rootfs), got);
          if (diff.length) fails.push(`after the import run again, the image's tree differs from umoci's: ${diff.slice(0, 4).join('; ')}${diff.length > 4 ? ` (${diff.length} in all)` : ''}`);
        } finally {
          await s.close();
        }
      }
    }
    fails.push(...(await verifyPool(dir, empty, 0)).map((f) => `at the end of the point: ${f}`));
    out.push({ scenario: 'layers', point: `${label}${notes.length ? ` (${notes.join('; ')})` : ''}`, failures: fails });
    if (fails.length) break; // the pool's state is unknown after a failure
  }
  const left = mountsUnder(tmp);
  if (left.length && out.length) {
    // Never remove a directory through a mount: the last point fails, naming what is left.
    out[out.length - 1].failures.push(`mounts are left under ${tmp} after the run: ${left.join(', ')}`);
    return out;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(tmp, { recursive: true, force: true });
  return out;
}
