/**
 * A filesystem on a thin device through NBD: nbdfuse exposes an export as a file,
 * mkfs.ext4 formats it, the kernel mounts it with -o loop, files are written and the
 * filesystem is unmounted; e2fsck -fn finds it clean. A snapshot taken before a second
 * round of writes still mounts (read-only, through its own export) and shows the old tree.
 * Every mount and nbdfuse is undone in `finally`, whatever fails.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpdir } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import { have, makePool, run, runOk, serve, type Served } from './helpers';

function missing(): string | undefined {
  for (const tool of ['nbdfuse', 'fusermount3', 'mkfs.ext4', 'e2fsck', 'mount', 'umount']) if (!have(tool)) return `${tool} not installed`;
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse is missing';
  if (!fs.existsSync('/dev/loop-control')) return 'no loop devices (/dev/loop-control missing)';
  if (process.getuid?.() !== 0) return 'mount -o loop needs root';
  return undefined;
}

interface Fuse { file: string; child: ChildProcess; exited: Promise<void> }

/** Start nbdfuse on `dir` (the export appears as dir/nbd) and wait until the file is there. */
async function nbdfuse(dir: string, uri: string, readOnly: boolean): Promise<Fuse> {
  fs.mkdirSync(dir, { recursive: true });
  const pidfile = `${dir}.pid`;
  const child = spawn('nbdfuse', [...(readOnly ? ['-r'] : []), '-P', pidfile, dir, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const file = path.join(dir, 'nbd');
  for (let i = 0; ; i++) {
    if (fs.existsSync(pidfile) && fs.existsSync(file)) break;
    if (child.exitCode !== null) throw new Error(`nbdfuse exited ${child.exitCode}: ${err}`);
    if (i > 200) throw new Error(`nbdfuse did not come up in 20 s: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { file, child, exited };
}

async function stopFuse(dir: string, f: Fuse | undefined): Promise<void> {
  if (!f) return;
  if (f.child.exitCode === null) {
    const r = await run('fusermount3', ['-u', dir], 30_000);
    if (r.status !== 0) await run('fusermount3', ['-uz', dir], 30_000);
  }
  const timer = setTimeout(() => f.child.kill('SIGKILL'), 15_000);
  await f.exited;
  clearTimeout(timer);
}

async function umount(dir: string, mounted: boolean): Promise<void> {
  if (!mounted) return;
  const r = await run('umount', [dir], 60_000);
  if (r.status !== 0) await run('umount', ['-l', dir], 60_000);
}

test('nbdfuse + mkfs.ext4 + mount -o loop; e2fsck clean; a snapshot shows the old tree', async (t) => {
  const why = missing();
  if (why) return t.skip(why);
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '96M' });
  const fuseDir = d.file('fuse');
  const mnt = d.file('mnt');
  fs.mkdirSync(mnt);

  // Round 1: make the filesystem and the old tree.
  let s: Served | undefined = await serve(pool, d.path);
  let f: Fuse | undefined;
  let mounted = false;
  try {
    f = await nbdfuse(fuseDir, s.uri(1), false);
    await runOk('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', f.file]);
    await runOk('mount', ['-o', 'loop', f.file, mnt]);
    mounted = true;
    fs.mkdirSync(path.join(mnt, 'old'));
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(mnt, 'old', `f${i}`), `old file ${i}\n`.repeat(100 * (i + 1)));
    await umount(mnt, mounted);
    mounted = false;
    await stopFuse(fuseDir, f);
    f = undefined;
    assert.equal((await s.stop()).code, 0);
    s = undefined;
  } finally {
    await umount(mnt, mounted);
    await stopFuse(fuseDir, f);
    await s?.stop();
  }

  thinsimOk(['thin', 'snap', pool, '2', '1']);

  // Round 2: change the origin's tree; the snapshot keeps the old one.
  const fuseSnap = d.file('fuse-snap');
  const mntSnap = d.file('mnt-snap');
  fs.mkdirSync(mntSnap);
  let fs2: Fuse | undefined;
  let mountedSnap = false;
  s = await serve(pool, d.path);
  try {
    f = await nbdfuse(fuseDir, s.uri(1), false);
    await runOk('mount', ['-o', 'loop', f.file, mnt]);
    mounted = true;
    fs.mkdirSync(path.join(mnt, 'new'));
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(mnt, 'new', `g${i}`), Buffer.alloc(64 * 1024 + i, i));
    for (let i = 0; i < 10; i++) fs.rmSync(path.join(mnt, 'old', `f${i}`));
    fs.writeFileSync(path.join(mnt, 'old', 'f10'), 'rewritten\n');
    await umount(mnt, mounted);
    mounted = false;
    const fsck = await run('e2fsck', ['-fn', f.file]);
    assert.equal(fsck.status, 0, `e2fsck -fn on the origin: ${fsck.stdout}${fsck.stderr}`);

    fs2 = await nbdfuse(fuseSnap, s.uri(2), true);
    const fsckSnap = await run('e2fsck', ['-fn', fs2.file]);
    assert.equal(fsckSnap.status, 0, `e2fsck -fn on the snapshot: ${fsckSnap.stdout}${fsckSnap.stderr}`);
    await runOk('mount', ['-o', 'loop,ro,noload', fs2.file, mntSnap]);
    mountedSnap = true;
    assert.deepEqual(fs.readdirSync(mntSnap).filter((n) => n !== 'lost+found').sort(), ['old'], 'the snapshot has the old tree only');
    for (let i = 0; i < 20; i++) {
      assert.equal(fs.readFileSync(path.join(mntSnap, 'old', `f${i}`), 'utf8'), `old file ${i}\n`.repeat(100 * (i + 1)), `old/f${i} as it was`);
    }
    await umount(mntSnap, mountedSnap);
    mountedSnap = false;

    await runOk('mount', ['-o', 'loop,ro', f.file, mnt]);
    mounted = true;
    assert.deepEqual(fs.readdirSync(mnt).filter((n) => n !== 'lost+found').sort(), ['new', 'old'], 'the origin has both trees');
    assert.equal(fs.readFileSync(path.join(mnt, 'old', 'f10'), 'utf8'), 'rewritten\n');
    assert.equal(fs.readdirSync(path.join(mnt, 'old')).length, 10);
  } finally {
    await umount(mnt, mounted);
    await umount(mntSnap, mountedSnap);
    await stopFuse(fuseDir, f);
    await stopFuse(fuseSnap, fs2);
    const r = await s.stop();
    assert.equal(r.code, 0, r.stderr);
  }
  thinsimOk(['check', pool]);
});
