/**
 * kill -9 between every step of Prepare, Commit and Remove (crash points containerd:* for
 * the service's steps, layers:* for the device transactions inside them; the child runs
 * with test/helpers/crash-hook.js preloaded):
 * the store reopens consistent (no record points at a missing device; the outcome is
 * the state before or the state after the request), Cleanup leaves no orphan device,
 * labels of the other snapshots are intact, and thinsim's check and both thin_checks
 * pass on the metadata as the crash left it and after the reopen.
 *
 * The killed process's nbdfuse helpers and loop devices outlive it; the reopen (the
 * mounts layer's clean-up after dead owners) must detach them. The child runs with a
 * private TMPDIR, so the test sees exactly its loop devices.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinSnapshotter } from '../../src/containerd';
import { SnapshotRecords } from '../../src/containerd/records';
import { DockerRecords } from '../../src/layers/records';
import { runTool } from '../../src/tools';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { MiB, SnapshotsClient, attachMissing, createPool, metadataFile } from './helpers';
import { CRASH_HOOK } from '../helpers/crash-hook';
import { startSnapshotterProcess } from './snapshotter-process';

const skip = attachMissing() ?? false;
const OPEN = { baseSize: 32 * MiB };

async function loops(): Promise<Map<string, string>> {
  const r = await runTool('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE']);
  return new Map(r.stdout.trim().split('\n').filter(Boolean).map((l) => { const [n, ...f] = l.trim().split(/\s+/); return [n, f.join(' ')]; }));
}

/** Loop devices backed by files under `tmp` (the killed snapshotter's TMPDIR). */
async function loopsUnder(tmp: string): Promise<string[]> {
  return [...(await loops())].filter(([, file]) => file.startsWith(tmp + '/')).map(([dev]) => dev);
}

/** Records, index, device records and pool devices agree; returns the snapshot names. */
function assertConsistent(s: ThinSnapshotter, label: string): string[] {
  const names = s.store.list().map((l) => l.name).sort();
  const recs = new SnapshotRecords(s.store.pool.dir, true).read();
  for (const k of Object.keys(recs.snapshots)) assert.ok(names.includes(k), `${label}: label record ${k} has a snapshot`);
  const infos = new DockerRecords(s.store.pool.dir, true).listDevInfos();
  const devices = new Set(s.store.pool.devices());
  for (const l of s.store.list()) {
    assert.ok(infos.has(l.cacheId), `${label}: ${l.name} has a device record`);
    assert.ok(devices.has(l.deviceId), `${label}: ${l.name}'s device ${l.deviceId} exists`);
  }
  return names;
}

type Op = 'prepare' | 'commit' | 'remove';
const POINTS: Array<[Op, string]> = [
  ...[1, 2, 3].map((n) => ['prepare', `containerd:prepare:${n}`] as [Op, string]),
  ...[1, 2, 3, 4].map((n) => ['prepare', `layers:create:${n}`] as [Op, string]),
  ...[1, 2, 3, 4].map((n) => ['commit', `containerd:commit:${n}`] as [Op, string]),
  ...[1, 2, 3].map((n) => ['remove', `containerd:remove:${n}`] as [Op, string]),
  ...[1, 2, 3, 4].map((n) => ['remove', `layers:delete:${n}`] as [Op, string]),
];

for (const [op, point] of POINTS) {
  test(`kill -9 in ${op} at ${point}: reopens consistent, Cleanup leaves no orphan, checks pass`, { skip }, async (t) => {
    const dir = tempDir(t, 'thinsim-ctrd-crash-');
    const pool = await createPool(path.join(dir, 'pool'), 512 * MiB);
    // Before: P committed (with labels), A active on P (for commit), R active on P (for remove).
    let s = await ThinSnapshotter.open(pool, OPEN);
    try {
      await s.prepare('p', '', { keep: 'me' });
      await s.commit('P', 'p', { keep: 'P' });
      await s.prepare('A', 'P', { a: '1' });
      await s.prepare('R', 'P');
    } finally {
      await s.close();
    }
    const before = ['A', 'P', 'R'];
    const after = { prepare: ['A', 'N', 'P', 'R'], commit: ['C', 'P', 'R'], remove: ['A', 'P'] }[op];
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp);
    const sock = path.join(dir, 's.sock');
    const child = await startSnapshotterProcess(pool, sock, ['--base-image-size', '32M'], { THINSIM_CRASH_AT: point, TMPDIR: tmp }, [CRASH_HOOK]);
    const c = new SnapshotsClient(sock);
    try {
      const call = op === 'prepare' ? c.call('Prepare', { key: 'N', parent: 'P', labels: { n: '1' } })
        : op === 'commit' ? c.call('Commit', { name: 'C', key: 'A', labels: { c: '1' } })
          : c.call('Remove', { key: 'R' });
      await call.catch(() => undefined); // the process dies under the call: the reply (or its absence) is not the point
      const ended = await child.exited(30_000);
      if (!ended) await child.stop('SIGKILL');
      assert.equal(ended?.signal, 'SIGKILL', `the snapshotter killed itself at ${point} (${child.stderr()})`);
    } finally {
      c.close();
    }
    fs.rmSync(sock, { force: true });
    metadataOracles(t, metadataFile(pool), `as the crash left it (${point}): `);

    s = await ThinSnapshotter.open(pool, OPEN);
    try {
      assert.deepEqual(await loopsUnder(tmp), [], 'the reopen detached the killed snapshotter\'s loop devices');
      const names = assertConsistent(s, point);
      assert.ok(JSON.stringify(names) === JSON.stringify(before) || JSON.stringify(names) === JSON.stringify(after), `${point}: ${names} is the state before (${before}) or after (${after})`);
      assert.deepEqual((await s.stat('P')).labels, { keep: 'P' }, 'P\'s labels are intact');
      if (names.includes('C')) {
        assert.deepEqual((await s.stat('C')).labels, { c: '1' });
        assert.equal((await s.stat('C')).kind, 'committed');
      }
      if (names.includes('N')) assert.deepEqual((await s.stat('N')).labels, { n: '1' });
      await s.cleanup();
      const infos = new DockerRecords(pool, true).listDevInfos();
      assert.deepEqual(s.store.pool.devices().slice().sort((a, b) => a - b), [...infos.values()].map((d) => d.device_id).sort((a, b) => a - b), 'pool devices = device records after Cleanup');
      assert.equal(infos.size, names.length + 1, 'one device record per snapshot, plus the base');
      // The service still works on the reopened store.
      await s.prepare('after', 'P');
      await s.remove('after');
    } finally {
      await s.close();
    }
    metadataOracles(t, metadataFile(pool), `after the reopen (${point}): `);
  });
}
