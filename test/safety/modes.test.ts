/**
 * File modes of what thinsim writes into a pool, under umask 0 (so the umask cannot be
 * what keeps them private): after `pool create`, a rewrite of pool.json, `image import`
 * (Docker's records: layers/records.ts, image-records.ts) and a snapshotter Prepare over
 * gRPC (containerd/records.ts), every regular file thinsim made in the pool directory is
 * 0600 and every directory it made is 0700. Also `restore` into a new directory.
 * The modes are read with lstat(2), not from thinsim.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinSnapshotter, startSnapshotServer } from '../../src/containerd';
import { writeDockerArchive } from '../../src/experiments/image-gen';
import { writeAtomic } from '../../src/durable';
import { tmpdir } from '../helpers/oracle';
import { thinsim, thinsimOk } from '../helpers/cli';
import { attachMissing, SnapshotsClient } from '../containerd/helpers';
import { missingMount } from '../layers/image-fixtures';

const MiB = 2 ** 20;

process.umask(0); // inherited by the CLI children: nothing below may rely on the umask

/** Every entry under `root` (root included) whose mode is not 0600 (files) or 0700 (directories). */
function wideModes(root: string, skip: (rel: string) => boolean = () => false): string[] {
  const bad: string[] = [];
  const walk = (p: string, rel: string) => {
    if (rel && skip(rel)) return;
    const st = fs.lstatSync(p);
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) {
      if (mode !== 0o700) bad.push(`${rel || '.'}/ is ${mode.toString(8)}`);
      for (const e of fs.readdirSync(p)) walk(path.join(p, e), rel ? `${rel}/${e}` : e);
    } else if (st.isFile()) {
      if (mode !== 0o600) bad.push(`${rel} is ${mode.toString(8)}`);
    } else if (!st.isSocket()) {
      bad.push(`${rel} is neither a file nor a directory`);
    }
  };
  walk(root, '');
  return bad;
}

const modeOf = (p: string) => (fs.lstatSync(p).mode & 0o7777).toString(8);

test('pool create, then rewrites of pool.json: directory 0700, data, metadata and pool.json 0600', (t) => {
  const d = tmpdir('thinsim-modes-');
  t.after(() => d.cleanup());
  const pool = d.file('a/b/pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '64M', '--metadata-size', '4M']);
  assert.deepEqual(wideModes(pool), [], 'after pool create');
  assert.deepEqual(fs.readdirSync(pool).sort(), ['data', 'metadata', 'pool.json']);
  assert.equal(modeOf(d.file('a')), '777', 'parents are made as mkdir -p makes them (umask 0 here)');
  // A pool.json left 0644 (by an older thinsim, or by hand) becomes 0600 at the next rewrite.
  fs.chmodSync(path.join(pool, 'pool.json'), 0o644);
  thinsimOk(['thin', 'create', pool, '1', '--size', '16M']);
  assert.equal(modeOf(path.join(pool, 'pool.json')), '600', 'the atomic rewrite keeps pool.json 0600');
  thinsimOk(['thin', 'snap', pool, '2', '1']);
  thinsimOk(['thin', 'delete', pool, '2']);
  assert.deepEqual(wideModes(pool), [], 'after thin create, snap and delete');
});

test('writeAtomic: exactly the mode asked for, whatever the umask, and a rename keeps it', (t) => {
  const d = tmpdir('thinsim-modes-');
  t.after(() => d.cleanup());
  const f = d.file('rec');
  for (const umask of [0, 0o022, 0o077]) {
    const old = process.umask(umask);
    try {
      writeAtomic(f, 'one');
      assert.equal(modeOf(f), '600', `default mode under umask ${umask.toString(8)}`);
      fs.chmodSync(f, 0o666);
      writeAtomic(f, 'two');
      assert.equal(modeOf(f), '600', `a rewrite of a 0666 file under umask ${umask.toString(8)}`);
      writeAtomic(f, 'three', 0o640);
      assert.equal(modeOf(f), '640', `an explicit mode under umask ${umask.toString(8)}`);
    } finally {
      process.umask(old);
    }
  }
  assert.equal(fs.readFileSync(f, 'utf8'), 'three');
  assert.deepEqual(fs.readdirSync(d.path), ['rec'], 'no temporary file is left');
});

test('restore into a new directory: directory 0700, metadata 0600', (t) => {
  const d = tmpdir('thinsim-modes-');
  t.after(() => d.cleanup());
  const pool = d.file('pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '64M', '--metadata-size', '4M']);
  thinsimOk(['thin', 'create', pool, '1', '--size', '16M']);
  const xml = d.file('m.xml');
  thinsimOk(['dump', pool, '-o', xml]);
  const target = d.file('restored');
  const r = thinsim(['restore', target, '-i', xml]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(wideModes(target), [], 'after restore');
});

test('image import: Docker\'s records (devicemapper metadata, layerdb, imagedb, repositories) are 0600 in 0700 directories', { skip: missingMount() ?? false }, async (t) => {
  const d = tmpdir('thinsim-modes-');
  t.after(() => d.cleanup());
  const pool = d.file('pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '512M', '--metadata-size', '16M']);
  const archive = d.file('img.tar');
  await writeDockerArchive(archive, {
    repoTag: 'safe/modes:1',
    layers: [
      [{ path: 'etc', type: 'dir' }, { path: 'etc/hostname', type: 'file', content: 'modes\n' }],
      [{ path: 'etc/motd', type: 'file', content: 'second layer\n', mode: 0o644 }],
    ],
  });
  const r = thinsim(['image', 'import', pool, archive, '--base-size', '64M', '--json'], { timeoutMs: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  const docker = fs.readdirSync(pool).filter((e) => !['data', 'metadata', 'pool.json'].includes(e));
  assert.ok(docker.length > 0, 'import wrote Docker\'s records into the pool directory');
  assert.deepEqual(wideModes(pool), [], 'after image import');
  thinsimOk(['container', 'create', pool, 'safe/modes:1', 'c1']);
  assert.deepEqual(wideModes(pool), [], 'after container create');
});

test('snapshotter Prepare over gRPC: the snapshotter\'s records are 0600 in 0700 directories', { skip: attachMissing() ?? false }, async (t) => {
  const d = tmpdir('thinsim-modes-');
  t.after(() => d.cleanup());
  const pool = d.file('pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '512M', '--metadata-size', '16M']);
  const snap = await ThinSnapshotter.open(pool, { baseSize: 64 * MiB });
  const sock = d.file('snap.sock');
  const server = await startSnapshotServer(snap, sock);
  const client = new SnapshotsClient(sock);
  try {
    assert.equal(modeOf(sock), '600', 'the socket');
    await client.call('Prepare', { key: 'default/1/a', parent: '', labels: { l: '1' } });
    await client.call('Commit', { name: 'default/2/c', key: 'default/1/a' });
    await client.call('Prepare', { key: 'default/3/b', parent: 'default/2/c' });
    // pool.lock is held meanwhile; run/ holds the attachments' records and fuse files.
    assert.deepEqual(wideModes(pool), [], 'while serving');
    assert.equal(modeOf(path.join(pool, 'docker', 'containerd', 'snapshots.json')), '600', 'the snapshotter\'s records');
  } finally {
    client.close();
    await server.stop();
    await snap.close();
  }
  assert.deepEqual(wideModes(pool), [], 'after the snapshotter stopped');
});
