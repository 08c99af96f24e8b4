/**
 * An unmodified containerd (Debian's 1.6) with thinsim as its proxy snapshotter, running
 * runc containers from a static busybox image built by umoci and skopeo:
 *  1. `ctr image import --snapshotter thinsim`;
 *  2. `ctr run --rm` prints what /bin/echo says;
 *  3. a container's written file is on its snapshot (ctr snapshots mounts, mount, read);
 *  4. ctr snapshots ls / usage / info / tree answer;
 *  5. two containers of one image share the image's blocks (thin_ls's exclusive/shared);
 *  6. restarting the snapshotter with active snapshots keeps ls and the mounts;
 *  7. `ctr image rm --sync` and containerd's GC remove the snapshots and the pool's data
 *     space comes back (only the base device's blocks are left);
 *  8. SIGTERM: exit 0, nothing attached; thinsim's check and both thin_checks pass.
 * Skips visibly without root, containerd, runc, umoci, skopeo or busybox-static.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../../src/pool/pool';
import { DockerRecords } from '../../src/layers/records';
import { runTool } from '../../src/tools';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { containerdMissing, startContainerd } from '../../src/containerd/daemon';
import { attachMissing, createPool, metadataFile, MiB } from './helpers';
import { BUSYBOX_REF, buildBusyboxArchive, imageToolsMissing } from './images';
import { startSnapshotterProcess } from './snapshotter-process';

const skip = containerdMissing() ?? attachMissing() ?? imageToolsMissing() ?? false;
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'thinsim.js');

function ok(r: { status: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.status, 0, `${what} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function layerUsage(pool: string): Promise<Array<{ name: string; mappedBytes: number; exclusiveBytes: number; sharedBytes: number }>> {
  return JSON.parse(ok(await runTool(process.execPath, [BIN, 'layer', 'usage', pool, '--json']), 'thinsim layer usage'));
}

test('containerd runs runc containers on thinsim snapshots: import, run, files, reports, sharing, restart, GC, checks', { skip, timeout: 600_000 }, async (t) => {
  const dir = tempDir(t, 'thinsim-ctrd-');
  const archive = buildBusyboxArchive(path.join(dir, 'img'));
  const pool = await createPool(path.join(dir, 'pool'), 2048 * MiB);
  const sock = path.join(dir, 'thinsim.sock');
  let snap = await startSnapshotterProcess(pool, sock, ['--base-image-size', '512M']);
  assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
  const ctrd = await startContainerd({ dir, proxyPlugins: [{ name: 'thinsim', address: sock }] });
  const id = (n: string) => `${n}-${process.pid}`; // container ids unique to the run (daemon.ts)
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  try {
    const ctr = (args: string[]) => ctrd.ctr(args);
    const run = (args: string[]) => ctr(['run', '--runc-root', ctrd.runcRoot, ...args]);
    const sn = (args: string[]) => ctr(['snapshots', '--snapshotter', 'thinsim', ...args]);
    ok(await ctr(['image', 'import', '--snapshotter', 'thinsim', archive]), 'ctr image import');
    const echo = ok(await run(['--rm', '--snapshotter', 'thinsim', BUSYBOX_REF, id('echo1'), '/bin/echo', 'hello', 'from', 'thinsim']), 'ctr run --rm');
    assert.equal(echo.trim(), 'hello from thinsim');

    // A container that writes a file, and a second one from the same image.
    ok(await run(['--snapshotter', 'thinsim', BUSYBOX_REF, id('w1'), '/bin/sh', '-c', 'dd if=/dev/urandom of=/big bs=1M count=4 2>/dev/null; echo written-in-w1 > /note; sync']), 'ctr run w1');
    ok(await run(['--snapshotter', 'thinsim', BUSYBOX_REF, id('w2'), '/bin/sh', '-c', 'echo w2 > /note']), 'ctr run w2');
    const readNote = async (key: string): Promise<string> => {
      const cmd = ok(await sn(['mounts', mnt, key]), 'ctr snapshots mounts').trim();
      const m = /^mount -t (\S+) (\/dev\/loop\d+) \S+(?: -o ?(\S*))?$/.exec(cmd);
      assert.ok(m, `a mount command: ${cmd}`);
      ok(await runTool('mount', ['-t', m[1], ...(m[3] ? ['-o', m[3]] : []), m[2], mnt]), 'mount');
      try {
        return await fs.promises.readFile(path.join(mnt, 'note'), 'utf8');
      } finally {
        ok(await runTool('umount', [mnt]), 'umount');
      }
    };
    assert.equal(await readNote(id('w1')), 'written-in-w1\n');
    assert.equal(await readNote(id('w2')), 'w2\n');

    // The reports.
    const ls = ok(await sn(['ls']), 'ctr snapshots ls');
    const keys = ls.trim().split('\n').slice(1).map((l) => l.split(/\s+/));
    assert.deepEqual(keys.filter((k) => k[0] === id('w1') || k[0] === id('w2')).map((k) => k[2]), ['Active', 'Active']);
    const layerKey = keys.find((k) => k[0].startsWith('sha256:'))![0];
    assert.ok(keys.filter((k) => k[0] === id('w1'))[0][1] === layerKey, 'w1\'s parent is the image layer');
    const usage = ok(await sn(['usage', id('w1')]), 'ctr snapshots usage');
    const size = new RegExp(`${id('w1')}\\s+([\\d.]+) (KiB|MiB)`).exec(usage);
    assert.ok(size && (size[2] === 'MiB' ? Number(size[1]) * MiB : Number(size[1]) * 1024) >= 4 * MiB, `w1 uses at least its 4 MiB file: ${usage}`);
    const info = JSON.parse(ok(await sn(['info', id('w1')]), 'ctr snapshots info'));
    assert.equal(info.Kind, 'Active');
    assert.equal(info.Parent, layerKey);
    assert.match(ok(await sn(['tree']), 'ctr snapshots tree'), /sha256:[0-9a-f]{64}\n\s+\\_ w[12]-\d+\n\s+\\_ w[12]-\d+/);

    // Sharing: the image layer's blocks are shared by both containers, each container's own writes are exclusive.
    const u = await layerUsage(pool);
    const img = u.find((r) => r.name.endsWith(layerKey))!;
    const w1 = u.find((r) => r.name.endsWith(`/${id('w1')}`))!;
    const w2 = u.find((r) => r.name.endsWith(`/${id('w2')}`))!;
    assert.ok(img.sharedBytes > 1 * MiB && img.sharedBytes > 2 * img.exclusiveBytes, `image layer mostly shared (the containers rewrote some ext4 metadata blocks): ${JSON.stringify(img)}`);
    assert.ok(w1.exclusiveBytes >= 4 * MiB && w1.sharedBytes >= img.mappedBytes / 2, `w1: its 4 MiB exclusive, the image's blocks shared: ${JSON.stringify(w1)}`);
    assert.ok(w2.exclusiveBytes < 1 * MiB, `w2 wrote a few bytes: ${JSON.stringify(w2)}`);

    // Restart with w1 and w2 active.
    const before = ok(await sn(['ls']), 'ls');
    const r1 = await snap.stop();
    assert.deepEqual(r1, { code: 0, signal: null }, `SIGTERM: exit 0 (${snap.stderr()})`);
    snap = await startSnapshotterProcess(pool, sock, ['--base-image-size', '512M']);
    // containerd's proxy client redials with a backoff (up to 3 s in 1.6): give it 15 s.
    let again = await sn(['ls']);
    for (let i = 0; i < 30 && again.status !== 0 && /unavailable|connection error/.test(again.stderr); i++) {
      await new Promise((r) => setTimeout(r, 500));
      again = await sn(['ls']);
    }
    assert.equal(ok(again, 'ls after restart'), before);
    assert.equal(await readNote(id('w1')), 'written-in-w1\n', 'w1\'s mount works after the restart');
    assert.equal(ok(await run(['--rm', '--snapshotter', 'thinsim', BUSYBOX_REF, id('echo2'), '/bin/echo', 'again']), 'ctr run after the restart').trim(), 'again');

    // A running container's snapshot is mounted: the first SIGTERM only warns, the container keeps working.
    ok(await run(['-d', '--snapshotter', 'thinsim', BUSYBOX_REF, id('long'), '/bin/sleep', '1000']), 'ctr run -d');
    snap.child.kill('SIGTERM');
    assert.equal(await snap.exited(3000), undefined, 'the snapshotter keeps serving under a running container');
    assert.match(snap.stderr(), /1 snapshot\(s\) are mounted .*still serving/);
    assert.equal(ok(await ctr(['task', 'exec', '--exec-id', 'ls', id('long'), '/bin/ls', '/bin/busybox']), 'exec in the running container').trim(), '/bin/busybox');
    ok(await ctr(['task', 'kill', '-s', 'SIGKILL', id('long')]), 'ctr task kill');
    for (let i = 0; i < 50 && !/STOPPED/.test((await ctr(['task', 'ls'])).stdout); i++) await new Promise((r) => setTimeout(r, 100));
    ok(await ctr(['task', 'delete', id('long')]), 'ctr task delete');
    ok(await ctr(['containers', 'rm', id('long')]), 'ctr containers rm long');

    // Remove containers and the image: containerd's GC removes the snapshots; the space comes back.
    for (const c of [id('w1'), id('w2')]) ok(await ctr(['containers', 'rm', c]), `ctr containers rm ${c}`);
    ok(await ctr(['image', 'rm', '--sync', BUSYBOX_REF]), 'ctr image rm --sync');
    assert.equal(ok(await sn(['ls']), 'ls after GC').trim().split('\n').length, 1, 'no snapshot is left');
  } finally {
    await ctrd.stop();
    const r = await snap.stop();
    assert.deepEqual(r, { code: 0, signal: null }, `final SIGTERM: exit 0 (${snap.stderr()})`);
  }
  const p = Pool.open(pool, { readOnly: true });
  try {
    const base = new DockerRecords(pool, true).readDevInfo('')!;
    assert.deepEqual(p.devices(), [base.device_id], 'only the base device is left');
    const baseRow = p.sharing().find((r) => r.devId === base.device_id)!;
    assert.equal(p.status().usedDataBlocks, baseRow.mappedBlocks, 'every data block but the base\'s came back');
  } finally {
    await p.close();
  }
  const alloc = fs.statSync(path.join(pool, 'data')).blocks * 512;
  assert.ok(alloc < 64 * MiB, `the data file holds ${alloc} bytes: discards gave the space back`);
  metadataOracles(t, metadataFile(pool));
});
