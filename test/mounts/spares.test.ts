/**
 * MountHost's spares against the kernel: a writable loop device let go with release()
 * serves the next device of its size with that device's bytes (read and written through
 * /dev/loopN by dd, checked against what the pool holds), never the old device's; while
 * a spare it fails every access; a loop device some process holds open is never kept;
 * keepSpares() makes one ahead; close() leaves no loop device, nbdfuse or record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loopsBackedBy } from '../../src/mounts';
import { runTool } from '../../src/tools';
import { tempDir } from '../helpers/pool-model';
import { isRoot, missingMount } from '../layers/image-fixtures';
import { freshStore } from '../layers/store-helpers';

const MiB = 2 ** 20;
const skip = missingMount() ?? (isRoot ? undefined : 'needs root: spares are loop devices');

function pattern(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

/** `n` bytes at `offset` of a block device, read by dd with O_DIRECT in another process. */
async function ddRead(dev: string, offset: number, n: number): Promise<{ status: number | null; data: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('dd', [`if=${dev}`, 'bs=64K', `skip=${offset / (64 * 1024)}`, `count=${n / (64 * 1024)}`, 'iflag=direct', 'status=none']);
    const out: Buffer[] = [];
    let err = '';
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stderr.on('data', (d) => (err += d));
    c.on('exit', (status) => resolve({ status, data: Buffer.concat(out), stderr: err }));
  });
}

async function ddWrite(dev: string, offset: number, data: Buffer): Promise<void> {
  const tmp = path.join(os.tmpdir(), `thinsim-spare-${process.pid}.bin`);
  fs.writeFileSync(tmp, data);
  try {
    const r = await runTool('dd', [`if=${tmp}`, `of=${dev}`, 'bs=64K', `seek=${offset / (64 * 1024)}`, 'oflag=direct', 'conv=fsync,notrunc', 'status=none']);
    assert.equal(r.status, 0, r.stderr);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

test('mounts: spares serve the next device of their size, never the old one', { skip }, async (t) => {
  const dir = tempDir(t, 'thinsim-spares-');
  const store = await freshStore(dir, { baseSize: 64 * MiB });
  const host = store.host;
  const pool = store.pool;
  let closed = false;
  t.after(async () => { if (!closed) await store.close(); });
  const a = await store.prepare('a');
  const b = await store.prepare('b');
  const A = pattern(1, MiB);
  const B = pattern(2, MiB);
  await pool.write(a.deviceId, MiB, A);
  await pool.write(b.deviceId, MiB, B);
  await pool.flush();

  const first = await host.attach(a.deviceId, { readOnly: false, loop: true });
  const loop = first.loop!;
  assert.match(loop, /^\/dev\/loop\d+$/);
  let r = await ddRead(loop, MiB, MiB);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.data.equals(A), 'device a reads back through its loop device');

  await t.test('a released loop device is kept as a spare, and fails every access meanwhile', async () => {
    await first.release();
    await host.settled();
    assert.deepEqual(host.spareLoops(), [loop]);
    assert.equal(host.attachments().length, 0, 'a spare is no attachment');
    const rr = await ddRead(loop, MiB, 64 * 1024);
    assert.notEqual(rr.status, 0, 'a read of a spare fails');
    assert.equal(rr.data.length, 0, 'and returns no bytes');
  });

  await t.test('the next device of its size gets the same loop device with its own bytes; writes land in it', async () => {
    const second = await host.attach(b.deviceId, { readOnly: false, loop: true });
    assert.equal(second.loop, loop, 'the spare was used');
    assert.deepEqual(host.spareLoops(), []);
    r = await ddRead(loop, MiB, MiB);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.data.equals(B), 'device b\'s bytes, not a\'s');
    const C = pattern(3, 256 * 1024);
    await ddWrite(loop, 4 * MiB, C);
    assert.ok((await pool.read(b.deviceId, 4 * MiB, C.length)).equals(C), 'the write landed in device b');
    assert.ok((await pool.read(a.deviceId, 4 * MiB, C.length)).equals(Buffer.alloc(C.length)), 'device a is untouched');
    assert.ok((await pool.read(a.deviceId, MiB, MiB)).equals(A), 'device a still holds its bytes');

    // A process holding the loop device open: release must not keep it.
    const holder = spawn('sh', ['-c', `exec 3<${loop}; echo held; exec sleep 60`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise<void>((res) => holder.stdout!.once('data', () => res()));
    const released = second.release();
    await host.settled();
    assert.deepEqual(host.spareLoops(), [], 'a loop device held open is not kept');
    holder.kill('SIGKILL');
    await released;
    for (let i = 0; i < 100 && loopsBackedBy(first.file).length; i++) await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(loopsBackedBy(first.file), [], 'it was detached once the holder let go');
  });

  await t.test('a device of another size does not take a spare', async () => {
    await store.pool.createThin(999, 128 * MiB);
    // A spare of 64 MiB first. (A release keeps none while some other process has the
    // loop device open, e.g. a probe by another test running beside this one: try again.)
    for (let i = 0; i < 5 && host.spareLoops().length === 0; i++) {
      const x = await host.attach(a.deviceId, { readOnly: false, loop: true });
      await x.release();
      await host.settled();
    }
    const kept = host.spareLoops();
    assert.equal(kept.length, 1);
    const y = await host.attach(999, { readOnly: false, loop: true });
    assert.notEqual(y.loop, kept[0], 'a 128 MiB device got its own loop device');
    assert.deepEqual(host.spareLoops(), kept, 'the 64 MiB spare is still there');
    await y.detach();
    await store.pool.deleteDevice(999);
  });

  await t.test('keepSpares makes one ahead, read-only attachments never take one, and close leaves nothing', async () => {
    host.keepSpares(1);
    const z = await host.attach(b.deviceId, { readOnly: false, loop: true });
    await host.settled();
    assert.equal(host.spareLoops().length, 1, 'a spare is ready for the next attachment');
    const ro = await host.attach(a.deviceId, { readOnly: true, loop: true });
    assert.ok(!host.spareLoops().includes(ro.loop!), 'the read-only attachment has a loop device of its own');
    assert.equal(fs.readFileSync(`/sys/block/${path.basename(ro.loop!)}/ro`, 'utf8').trim(), '1');
    await ro.release();
    await z.release();
    await host.settled();
    const files = fs.readdirSync(path.join(pool.dir, 'run'));
    assert.ok(files.length >= 1, 'spares are recorded for the crash cleanup');
    const backing = host.spareLoops().map((l) => fs.readFileSync(`/sys/block/${path.basename(l)}/loop/backing_file`, 'utf8').trim());
    assert.ok(backing.length >= 1);
    await store.close();
    closed = true;
    for (const f of backing) assert.deepEqual(loopsBackedBy(f), [], `the spare on ${f} was detached`);
    assert.deepEqual(fs.readdirSync(path.join(pool.dir, 'run')), [], 'no record left');
  });
});
