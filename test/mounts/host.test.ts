/**
 * The mounts layer against the kernel's own view (/proc/self/mounts, /sys/block/loop*,
 * /proc/PID): a process killed with its layer mounted leaves a mount, a loop device, an
 * nbdfuse process and a socket, and the next open cleans every one of them up, with the
 * pool passing both thin_checks and the data the filesystem had synced still there; a
 * busy mount is refused with the holder's pid and command, stays mounted and served, and
 * unmounts once the holder is gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LayerStore } from '../../src/layers/snapshotter';
import { loopsBackedBy, mountsUnder } from '../../src/mounts';
import { bothTools, ok } from '../helpers/oracle';
import { tempDir } from '../helpers/pool-model';
import { expectCode } from '../layers/helpers';
import { isRoot, missingMount } from '../layers/image-fixtures';
import { freshStore } from '../layers/store-helpers';

const CHILD = path.join(__dirname, 'holder-child.js');

interface Held { path: string; file: string; loop?: string; pid: number }

function holdInChild(pool: string, layer: string): Promise<{ held: Held; kill(): Promise<void> }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CHILD, 'hold', pool, layer], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.stdout.on('data', (d) => {
      out += d;
      if (!out.includes('\n')) return;
      const held = JSON.parse(out.split('\n')[0]) as Held;
      resolve({ held, kill: () => new Promise<void>((r) => { c.once('exit', () => r()); c.kill('SIGKILL'); }) });
    });
    c.on('exit', (code) => reject(new Error(`holder exited ${code}: ${err}`)));
  });
}

function run(cmd: string, args: string[]): Promise<number | null> {
  return new Promise((r) => spawn(cmd, args, { stdio: 'ignore' }).on('exit', (code) => r(code)));
}

/** nbdfuse processes whose command line names `dir`. */
function nbdfuseUnder(dir: string): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'nbdfuse' && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir); } catch { return false; }
  }).map(Number);
}

const skip = missingMount() ?? (isRoot ? undefined : 'needs root: the mounts layer attaches loop devices');

test('mounts: crash cleanup and busy unmounts', { skip }, async (t) => {
  const dir = tempDir(t, 'thinsim-mounts-');
  const store = await freshStore(dir);
  const pool = store.pool.dir;
  await store.prepare('a');
  await store.close();

  await t.test('a killed owner leaves a mount, loop device, nbdfuse and socket; the next open cleans them all up', async () => {
    const { held, kill } = await holdInChild(pool, 'a');
    assert.ok(held.loop && /^\/dev\/loop\d+$/.test(held.loop), `attached to a loop device (${held.loop})`);
    assert.equal(await run('sh', ['-c', `echo survived > '${held.path}/f' && sync -f '${held.path}/f'`]), 0);
    await kill();
    const priv = path.dirname(held.path);
    assert.deepEqual(mountsUnder(priv).sort(), [held.path, path.dirname(held.file)].sort(), 'the dead owner left both mounts');
    assert.deepEqual(loopsBackedBy(held.file), [held.loop]);
    assert.equal(fs.readdirSync(path.join(pool, 'run')).length, 1, 'one attachment record');

    const s = await LayerStore.open(pool, { commitInterval: 0 });
    try {
      assert.equal(s.staleMounts.length, 1, s.staleMounts.join('\n'));
      assert.match(s.staleMounts[0], new RegExp(`left by pid ${held.pid}: unmounted ${held.path}.*detached ${held.loop}`));
      assert.deepEqual(mountsUnder(priv), [], 'no mount left');
      assert.deepEqual(loopsBackedBy(held.file), [], 'no loop device left');
      assert.deepEqual(nbdfuseUnder(priv), [], 'no nbdfuse left');
      assert.equal(fs.existsSync(priv), false, 'the private directory and its socket are gone');
      assert.deepEqual(fs.readdirSync(path.join(pool, 'run')), [], 'no record left');
      // Read-write: the journal is replayed (a read-only mount uses noload, as Docker does for frozen layers).
      const f = await s.withTree('a', (tree) => tree.read('f'), { readOnly: false });
      assert.equal(f.toString(), 'survived\n', 'what the filesystem synced before the kill is in the pool');
    } finally {
      await s.close();
    }
    const tools = bothTools(t);
    if (tools) for (const tool of tools) ok(tool.check(path.join(pool, 'metadata')), `thin_check ${tool.version}`);
  });

  await t.test('a busy mount names its holder and stays mounted and served; it unmounts once the holder exits', async () => {
    const s = await LayerStore.open(pool, { commitInterval: 0 });
    let holder: ReturnType<typeof spawn> | undefined;
    try {
      const m = await s.mount('a', { readOnly: false });
      holder = spawn('sleep', ['600'], { cwd: m.path, stdio: 'ignore' });
      for (let i = 0; i < 100 && !(fs.readlinkSync(`/proc/${holder.pid}/cwd`) === m.path && fs.readFileSync(`/proc/${holder.pid}/comm`, 'utf8').trim() === 'sleep'); i++) await new Promise((r) => setTimeout(r, 50));
      await expectCode(m.unmount(), 'E_MOUNTED', new RegExp(`pid ${holder.pid} \\(sleep: cwd\\)`));
      assert.deepEqual(mountsUnder(m.path), [m.path], 'still mounted');
      assert.equal(await run('sh', ['-c', `echo still served > '${m.path}/g' && sync -f '${m.path}/g'`]), 0, 'and still served');
      await expectCode(s.remove('a'), 'E_MOUNTED');
      await new Promise<void>((r) => { holder!.once('exit', () => r()); holder!.kill('SIGKILL'); });
      await m.unmount();
      assert.deepEqual(mountsUnder(m.path), [], 'unmounted (its loop device and nbdfuse may stay as a spare)');
      assert.equal((await s.withTree('a', (tree) => tree.read('g'), { readOnly: false })).toString(), 'still served\n');
    } finally {
      holder?.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 200));
      await s.close();
    }
  });

  await t.test('closing the store with a busy mount detaches it lazily and serves it until the holder is done', async () => {
    const s = await LayerStore.open(pool, { commitInterval: 0 });
    const m = await s.mount('a', { readOnly: false });
    // The holder sits in the tree, then writes through the lazily detached mount and exits.
    const holder = spawn('sh', ['-c', 'sleep 7; echo late > late && sync -f late'], { cwd: m.path, stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => holder.once('exit', (c) => r(c)));
    for (let i = 0; i < 100 && fs.readlinkSync(`/proc/${holder.pid}/cwd`) !== m.path; i++) await new Promise((r) => setTimeout(r, 50));
    await expectCode(s.close(), 'E_MOUNTED', /held by pid \d+ \((sh|sleep): cwd\).*detached lazily/);
    assert.equal(await exited, 0, 'the holder wrote through the detached mount');
    assert.deepEqual(mountsUnder(path.dirname(m.path)), []);
    assert.deepEqual(loopsBackedBy(m.file), []);
    const s2 = await LayerStore.open(pool, { commitInterval: 0 });
    try {
      assert.deepEqual(s2.staleMounts, [], 'close left nothing behind');
      assert.equal((await s2.withTree('a', (tree) => tree.read('late'), { readOnly: false })).toString(), 'late\n', 'served until the filesystem let go');
    } finally {
      await s2.close();
    }
  });
});
