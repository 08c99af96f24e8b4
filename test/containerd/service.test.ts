/**
 * The snapshotter through its gRPC API, as containerd's proxy client drives it, checked
 * against the kernel (ext4 mounts of the loop devices it hands out) and both thin_checks:
 *  - Prepare/View/Mounts/Commit/Remove/Stat/Update/List/Usage with containerd's
 *    semantics and errdefs codes;
 *  - a file written through a Prepare's mount is in its committed snapshot's children;
 *  - a view is read-only at the mount;
 *  - labels and snapshots survive a restart; active snapshots are attached again;
 *  - the socket is 0600; after Remove of everything only the base device is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinSnapshotter, startSnapshotServer } from '../../src/containerd';
import { DockerRecords } from '../../src/layers/records';
import { Pool } from '../../src/pool/pool';
import { runTool } from '../../src/tools';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { MiB, SnapshotsClient, attachMissing, createPool, grpcFailure, metadataFile } from './helpers';

const skip = attachMissing() ?? false;

async function mount(m: { type: string; source: string; options: string[] }, dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const r = await runTool('mount', ['-t', m.type, ...(m.options.length ? ['-o', m.options.join(',')] : []), m.source, dir]);
  assert.equal(r.status, 0, `mount ${m.source}: ${r.stderr}`);
}

async function umount(dir: string): Promise<void> {
  const r = await runTool('umount', [dir]);
  assert.equal(r.status, 0, `umount ${dir}: ${r.stderr}`);
}

async function serve(poolDir: string, sock: string) {
  const snap = await ThinSnapshotter.open(poolDir, { baseSize: 64 * MiB, fsOptions: ['-L', 'thinsim-base'] });
  const server = await startSnapshotServer(snap, sock);
  const client = new SnapshotsClient(sock);
  return {
    snap, client,
    stop: async () => { client.close(); await server.stop(); await snap.close(); },
  };
}

test('Snapshots over gRPC: containerd\'s semantics, errdefs codes, mounts the kernel reads, a restart keeps everything', { skip }, async (t) => {
  const dir = tempDir(t, 'thinsim-ctrd-svc-');
  const poolDir = await createPool(path.join(dir, 'pool'));
  const sock = path.join(dir, 'snap.sock');
  const mnt = path.join(dir, 'mnt');
  const payload = crypto.randomBytes(MiB + 12345);
  let s = await serve(poolDir, sock);
  try {
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600, 'the socket is 0600');
    const c = s.client;
    const p = await c.call('Prepare', { key: 'default/1/a', parent: '', labels: { 'containerd.io/gc.root': 'x', keep: '1' } });
    assert.equal(p.mounts.length, 1);
    const am = p.mounts[0];
    assert.equal(am.type, 'ext4');
    assert.match(am.source, /^\/dev\/loop\d+$/);
    assert.deepEqual(am.options, ['rw'], 'an active snapshot mounts read-write');
    const label = await runTool('blkid', ['-p', '-s', 'LABEL', '-o', 'value', am.source]);
    assert.equal(label.stdout.trim(), 'thinsim-base', 'fs_options reached mkfs of the base device');
    await mount(am, mnt);
    await fs.promises.writeFile(path.join(mnt, 'hello.bin'), payload);
    await umount(mnt);

    // Errors as containerd's errdefs reads them.
    assert.equal((await grpcFailure(c.call('Prepare', { key: 'default/1/a', parent: '' }))).code, status.ALREADY_EXISTS);
    assert.equal((await grpcFailure(c.call('Prepare', { key: 'k', parent: 'no-such-parent' }))).code, status.NOT_FOUND);
    assert.equal((await grpcFailure(c.call('Prepare', { key: 'k', parent: 'default/1/a' }))).code, status.INVALID_ARGUMENT, 'an active parent');
    assert.equal((await grpcFailure(c.call('Stat', { key: 'nope' }))).code, status.NOT_FOUND);
    assert.equal((await grpcFailure(c.call('Commit', { name: 'x', key: 'nope' }))).code, status.NOT_FOUND);

    await c.call('Commit', { name: 'default/2/c1', key: 'default/1/a', labels: { committed: 'yes' } });
    assert.equal((await grpcFailure(c.call('Stat', { key: 'default/1/a' }))).code, status.NOT_FOUND, 'Commit removes the active key');
    const st = (await c.call('Stat', { key: 'default/2/c1' })).info;
    assert.equal(st.kind, 'COMMITTED');
    assert.equal(st.parent, '');
    assert.deepEqual(st.labels, { committed: 'yes' });
    assert.ok(Number(st.created_at.seconds) > 1.7e9);
    const u = await c.call('Usage', { key: 'default/2/c1' });
    assert.ok(u.size >= payload.length && u.size < payload.length + 8 * MiB, `committed usage ${u.size} covers the ${payload.length}-byte file`);
    assert.equal(u.inodes, 1, 'one file was created on top of the base');

    // A child sees the parent's file; a view is read-only.
    const b = (await c.call('Prepare', { key: 'default/3/b', parent: 'default/2/c1' })).mounts[0];
    await mount(b, mnt);
    assert.ok(payload.equals(await fs.promises.readFile(path.join(mnt, 'hello.bin'))), 'the child reads the committed file');
    await fs.promises.writeFile(path.join(mnt, 'child.txt'), 'child\n');
    assert.equal((await grpcFailure(c.call('Commit', { name: 'default/9/x', key: 'default/3/b' }))).code, status.FAILED_PRECONDITION, 'commit while mounted');
    await umount(mnt);
    const v = (await c.call('View', { key: 'default/4/v', parent: 'default/2/c1' })).mounts[0];
    assert.deepEqual(v.options, ['ro', 'noload']);
    await mount(v, mnt);
    assert.ok(payload.equals(await fs.promises.readFile(path.join(mnt, 'hello.bin'))));
    await assert.rejects(fs.promises.writeFile(path.join(mnt, 'nope'), 'x'), /EROFS/);
    await umount(mnt);
    assert.equal((await grpcFailure(c.call('Commit', { name: 'default/9/x', key: 'default/4/v' }))).code, status.FAILED_PRECONDITION, 'a view cannot be committed');
    assert.equal((await grpcFailure(c.call('Remove', { key: 'default/2/c1' }))).code, status.FAILED_PRECONDITION, 'a parent with children');
    assert.equal((await grpcFailure(c.call('View', { key: 'default/9/v', parent: 'default/3/b' }))).code, status.INVALID_ARGUMENT, 'a view of an active snapshot');
    // A view without a parent: an empty, read-only filesystem.
    const e = (await c.call('View', { key: 'default/5/empty', parent: '' })).mounts[0];
    assert.deepEqual(e.options, ['ro', 'noload']);
    await mount(e, mnt);
    assert.deepEqual((await fs.promises.readdir(mnt)).filter((n) => n !== 'lost+found'), [], 'an empty filesystem');
    await assert.rejects(fs.promises.writeFile(path.join(mnt, 'nope'), 'x'), /EROFS/);
    await umount(mnt);
    assert.equal((await c.call('Stat', { key: 'default/5/empty' })).info.kind, 'VIEW');
    await c.call('Remove', { key: 'default/5/empty' });

    // Mounts of each kind.
    assert.deepEqual((await c.call('Mounts', { key: 'default/4/v' })).mounts[0].source, v.source);
    assert.deepEqual((await c.call('Mounts', { key: 'default/3/b' })).mounts[0].source, b.source);
    assert.deepEqual((await c.call('Mounts', { key: 'default/2/c1' })).mounts[0].options, ['ro', 'noload']);

    // Update: field paths; anything but labels is refused.
    let info = (await c.call('Update', { info: { name: 'default/3/b', labels: { a: '1', b: '2' } }, update_mask: { paths: ['labels.a', 'labels.b'] } })).info;
    assert.deepEqual(info.labels, { a: '1', b: '2' });
    info = (await c.call('Update', { info: { name: 'default/3/b', labels: { c: '3' } }, update_mask: { paths: ['labels.c', 'labels.a'] } })).info;
    assert.deepEqual(info.labels, { b: '2', c: '3' }, 'labels.a with no value drops a');
    info = (await c.call('Update', { info: { name: 'default/3/b', labels: { only: 'this' } }, update_mask: { paths: ['labels'] } })).info;
    assert.deepEqual(info.labels, { only: 'this' });
    assert.equal((await grpcFailure(c.call('Update', { info: { name: 'default/3/b', parent: 'x' }, update_mask: { paths: ['parent'] } }))).code, status.INVALID_ARGUMENT);
    assert.equal((await grpcFailure(c.call('Update', { info: { name: 'zzz' }, update_mask: { paths: ['labels'] } }))).code, status.NOT_FOUND);

    // List with containerd's filters.
    const names = async (f: string[]) => (await c.list(f)).map((i) => i.name).sort();
    assert.deepEqual(await names([]), ['default/2/c1', 'default/3/b', 'default/4/v']);
    assert.deepEqual(await names(['kind==active']), ['default/3/b']);
    assert.deepEqual(await names(['parent==default/2/c1']), ['default/3/b', 'default/4/v']);
    assert.deepEqual(await names(['labels.only==this']), ['default/3/b']);
    assert.deepEqual(await names(['labels.committed', 'kind==view']), ['default/2/c1', 'default/4/v'], 'filters are alternatives');
    assert.deepEqual(await names(['name~=^default/[24]/,kind!=view']), ['default/2/c1'], 'selectors in one filter all apply');
    assert.equal((await grpcFailure(c.list(['kind=='])) ).code, status.INVALID_ARGUMENT);
    const ua = await c.call('Usage', { key: 'default/3/b' });
    assert.ok(ua.size > 0 && ua.size < 8 * MiB, `active usage ${ua.size} is the child's own writes`);
  } finally {
    await s.stop();
  }

  // Restart: everything is still there, the active snapshot has a device again.
  s = await serve(poolDir, sock);
  try {
    const c = s.client;
    const all = await c.list();
    assert.deepEqual(all.map((i) => [i.name, i.kind, i.parent]).sort(), [['default/2/c1', 'COMMITTED', ''], ['default/3/b', 'ACTIVE', 'default/2/c1'], ['default/4/v', 'VIEW', 'default/2/c1']]);
    assert.deepEqual(all.find((i) => i.name === 'default/3/b').labels, { only: 'this' }, 'labels are kept across a restart');
    const b = (await c.call('Mounts', { key: 'default/3/b' })).mounts[0];
    await mount(b, mnt);
    assert.equal(await fs.promises.readFile(path.join(mnt, 'child.txt'), 'utf8'), 'child\n');
    assert.ok(payload.equals(await fs.promises.readFile(path.join(mnt, 'hello.bin'))));
    await umount(mnt);
    for (const k of ['default/4/v', 'default/3/b', 'default/2/c1']) await c.call('Remove', { key: k });
    assert.equal((await grpcFailure(c.call('Remove', { key: 'default/2/c1' }))).code, status.NOT_FOUND);
    assert.deepEqual(await c.list(), []);
    await c.call('Cleanup', {});
  } finally {
    await s.stop();
  }
  assert.ok(!fs.existsSync(sock), 'the socket is removed at stop');
  const pool = Pool.open(poolDir, { readOnly: true });
  try {
    const base = new DockerRecords(poolDir, true).readDevInfo('');
    assert.deepEqual(pool.devices(), [base!.device_id], 'only the base device is left');
  } finally {
    await pool.close();
  }
  metadataOracles(t, metadataFile(poolDir));
});
