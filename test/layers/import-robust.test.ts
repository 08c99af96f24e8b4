/**
 * Image import as a user runs it (the CLI, a process of its own), where it used to break:
 *  - with libuv's thread pool at 4 (the default) and at 1, a large image imports, and the
 *    top layer's tree equals GNU tar's extraction of the same layers (diff -r and find,
 *    run as other processes, compare contents, types, modes, owners and link targets);
 *  - killed with SIGKILL at random points, the next open leaves no mount, nbdfuse process
 *    or loop device behind, no half-made layer (the scratch layer and an unfinished device
 *    transaction are rolled back), and both thin_checks pass; then the import completes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDockerArchive, type GenEntry } from '../../src/experiments/image-gen';
import { LayerStore } from '../../src/layers/snapshotter';
import { loopsBackedBy, mountsUnder } from '../../src/mounts';
import { Pool } from '../../src/pool/pool';
import { runTool } from '../../src/tools';
import { Rand } from '../../support/random';
import { bothTools, ok, repoRoot } from '../helpers/oracle';
import { tempDir } from '../helpers/pool-model';
import './helpers'; // each test file's mounts under a TMPDIR of its own, inherited by the CLI children
import { isRoot, missingMount } from './image-fixtures';

const MiB = 2 ** 20;
const CLI = path.join(repoRoot(), 'bin', 'thinsim.js');

/** Three layers, ~2,400 files and ~70 MiB: many small files, a few large ones, links, owners. */
function layers(): GenEntry[][] {
  const l1: GenEntry[] = [{ path: 'usr', type: 'dir' }, { path: 'usr/lib', type: 'dir' }];
  for (let d = 0; d < 40; d++) {
    l1.push({ path: `usr/lib/p${d}`, type: 'dir', mode: 0o755 });
    for (let f = 0; f < 50; f++) l1.push({ path: `usr/lib/p${d}/f${f}`, type: 'file', content: { size: 512 * (1 + ((d * 50 + f) % 24)), seed: d * 50 + f + 1 }, mode: f % 7 === 0 ? 0o755 : 0o644, uid: f % 5 === 0 ? 1000 : 0, gid: f % 3 === 0 ? 100 : 0 });
  }
  const l2: GenEntry[] = [{ path: 'opt', type: 'dir' }];
  for (let f = 0; f < 4; f++) l2.push({ path: `opt/big${f}`, type: 'file', content: { size: 12 * MiB, seed: 500 + f } });
  l2.push({ path: 'opt/link', type: 'symlink', target: 'big0' }, { path: 'opt/hard', type: 'hardlink', target: 'opt/big1' });
  const l3: GenEntry[] = [{ path: 'etc', type: 'dir' }];
  for (let f = 0; f < 400; f++) l3.push({ path: `etc/c${f}`, type: 'file', content: `config ${f}\n`.repeat(f % 50 + 1) });
  return [l1, l2, l3];
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600_000 });
}

/** GNU tar's extraction of every layer, in order, into `dir` (this image has no whiteouts). */
function tarExtract(archive: string, dir: string, work: string): void {
  const un = path.join(work, 'archive');
  fs.mkdirSync(un, { recursive: true });
  ok(cliTool('tar', ['-xf', archive, '-C', un]), 'tar -x archive');
  const manifest = JSON.parse(fs.readFileSync(path.join(un, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
  fs.mkdirSync(dir, { recursive: true });
  for (const l of manifest[0].Layers) ok(cliTool('tar', ['-xpf', path.join(un, l), '--numeric-owner', '-C', dir]), 'tar -x layer');
}

function cliTool(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error) };
}

/**
 * Compare two trees from other processes: contents (diff -r) and every entry's type, mode,
 * owner, link target (find). Asynchronously: this process serves the mount they read.
 */
async function compareTrees(want: string, got: string): Promise<void> {
  const d = await runTool('diff', ['-r', '--no-dereference', '-x', 'lost+found', want, got]);
  assert.equal(d.status, 0, `diff -r found differences:\n${d.stdout.slice(0, 2000)}${d.stderr}`);
  const list = async (dir: string) => (await runTool('find', [dir, '-mindepth', '1', '-path', `${dir}/lost+found`, '-prune', '-o', '-printf', '%P %y %m %U %G %l %s\n'])).stdout.split('\n').filter(Boolean)
    .map((l) => (l.split(' ')[1] === 'd' ? l.replace(/ \d+$/, '') : l)).sort(); // directory sizes differ by filesystem
  assert.deepEqual(await list(got), await list(want));
}

/** nbdfuse processes whose command line names `dir`. */
function nbdfuseUnder(dir: string): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'nbdfuse' && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir); } catch { return false; }
  }).map(Number);
}

const gone = ['tar', 'diff', 'find'].find((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip = missingMount() ?? (isRoot ? undefined : 'needs root: layers mount through loop devices') ?? (gone ? `needs ${gone}` : undefined);

test('image import from the CLI: any thread pool size, and SIGKILL at random points', { skip }, async (t) => {
  const work = tempDir(t, 'thinsim-import-robust-');
  const archive = path.join(work, 'image.tar');
  await writeDockerArchive(archive, { repoTag: 'robust/image:1', layers: layers() });
  const want = path.join(work, 'want');
  tarExtract(archive, want, work);
  const newPool = async (name: string) => {
    const dir = path.join(work, name);
    await Pool.create(dir, { dataSize: 2048 * MiB, metadataSize: 64 * MiB }).close();
    return dir;
  };
  const checkTop = async (poolDir: string) => {
    const s = await LayerStore.open(poolDir, { commitInterval: 0 });
    try {
      const top = s.list().filter((l) => l.kind === 'committed').at(-1)!;
      await s.withMounted(top.name, (dir) => compareTrees(want, dir), { readOnly: true });
    } finally {
      await s.close();
    }
    const tools = bothTools(t);
    if (tools) for (const tool of tools) ok(tool.check(path.join(poolDir, 'metadata')), `thin_check ${tool.version}`);
  };

  for (const size of ['4', '1']) {
    await t.test(`UV_THREADPOOL_SIZE=${size}: the import completes and the tree is tar's`, async () => {
      const poolDir = await newPool(`pool-tp${size}`);
      const r = cli(['image', 'import', poolDir, archive], { UV_THREADPOOL_SIZE: size });
      assert.equal(r.status, 0, `import exited ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
      assert.match(r.stdout, /imported [0-9a-f]{12} robust\/image:1/);
      await checkTop(poolDir);
    });
  }

  await t.test('SIGKILL at random points: the next open cleans up and rolls back; then the import completes', async () => {
    const poolDir = await newPool('pool-kill');
    const rand = new Rand(16);
    const tmp = os.tmpdir();
    for (let round = 0; round < 4; round++) {
      const delay = 300 + rand.int(5000);
      const child = spawn(process.execPath, [CLI, 'image', 'import', poolDir, archive], { stdio: 'ignore' });
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      await exited;
      clearTimeout(timer);
      const s = await LayerStore.open(poolDir, { commitInterval: 0 });
      try {
        assert.deepEqual(mountsUnder(tmp).filter((m) => m.includes('thinsim-dev-')), [], `round ${round} (killed after ${delay} ms): no mount left`);
        assert.deepEqual(nbdfuseUnder(tmp), [], 'no nbdfuse left');
        assert.deepEqual(fs.readdirSync(path.join(poolDir, 'run')).filter((f) => f.endsWith('.json')), [], 'no attachment record left');
        assert.deepEqual(s.list().filter((l) => l.kind !== 'committed').map((l) => l.name), [], 'no scratch layer left');
        for (const l of s.list()) assert.ok(s.pool.hasDevice(l.deviceId), `layer ${l.name} has its device`);
      } finally {
        await s.close();
      }
      for (const f of fs.readdirSync(tmp).filter((n) => n.startsWith('thinsim-dev-'))) assert.deepEqual(loopsBackedBy(path.join(tmp, f, 'nbd-mnt', 'nbd')), []);
      const tools = bothTools(t);
      if (tools) for (const tool of tools) ok(tool.check(path.join(poolDir, 'metadata')), `thin_check ${tool.version} after round ${round}`);
    }
    const r = cli(['image', 'import', poolDir, archive]);
    assert.equal(r.status, 0, r.stderr);
    await checkTop(poolDir);
  });
});
