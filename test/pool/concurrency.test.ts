/**
 * Many requests in flight on one pool. The contract (src/pool/pool.ts): requests touching one
 * chunk run in the order they were issued, so the final state equals applying every request to
 * the model sequentially in issue order, and a read sees the model as it was when the read was
 * issued. Snapshots and commits issued among the requests are ordered the same way; a commit
 * never captures a block that is allocated but not yet mapped (or mapped but not yet written).
 * Randomised tests print their seed on failure; replay one with THINSIM_SEED=<seed>.
 */

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool, type CreateOptions, type OpenOptions } from '../../src/pool/pool';
import { Rand, pattern } from '../../support/random';
import {
  ContentModel, MiB, assertBytesMatch, checkContent, metadataOracles, oracleAvailability, ourCheck, tempDir, thinDump, verifyPool,
} from '../helpers/pool-model';
import { blockMap, dumpIds } from '../helpers/thin-model';
import { seeded, suiteSeeds } from '../helpers/seeds';

interface Setup {
  dir: string;
  pool: Pool;
  model: ContentModel;
  cb: number;
}

async function makePool(t: TestContext, c: CreateOptions = {}, o: OpenOptions = {}): Promise<Setup> {
  const dir = tempDir(t);
  const first = Pool.create(dir, { dataSize: 128 * MiB, metadataSize: 4 * MiB, ...c });
  await first.close();
  const s: Setup = { dir, pool: Pool.open(dir, o), model: new ContentModel(first.chunkBytes, { zero: c.zero, discard: c.discard }), cb: first.chunkBytes };
  t.after(() => s.pool.close().catch(() => undefined));
  return s;
}

/** Issues requests without awaiting them, applying each to the model at issue time. */
class Burst {
  readonly pending: Promise<unknown>[] = [];
  reads = 0;
  constructor(private readonly s: Setup) {}

  /** Write `data`, handed to the pool as one buffer or, with `r`, sometimes as a gather list of views. */
  write(id: number, off: number, data: Buffer, r?: Rand): void {
    this.pending.push(this.s.pool.write(id, off, r && r.chance(0.4) ? gather(r, data) : data));
    this.s.model.write(id, off, data);
  }

  discard(id: number, off: number, len: number): void {
    this.pending.push(this.s.pool.discard(id, off, len));
    this.s.model.discard(id, off, len);
  }

  read(id: number, off: number, len: number): void {
    const want = this.s.model.read(id, off, len);
    const n = this.reads++;
    this.pending.push(this.s.pool.read(id, off, len).then((got) => assertBytesMatch(got, want, `read #${n} of device ${id} at ${off}+${len}`, off)));
  }

  snap(id: number, origin: number): void {
    this.pending.push(this.s.pool.createSnap(id, origin));
    this.s.model.createSnap(id, origin);
  }

  other(p: Promise<unknown>): void {
    this.pending.push(p);
  }

  async settle(): Promise<void> {
    const rs = await Promise.allSettled(this.pending);
    const bad = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (bad.length) throw bad[0].reason;
  }
}

/** `data` cut at random points into views (some empty), as a socket's reads would deliver it. */
function gather(r: Rand, data: Buffer): Buffer[] {
  const cuts = Array.from({ length: r.int(4) }, () => r.int(data.length + 1)).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, data.length]) {
    out.push(data.subarray(at, c));
    at = c;
  }
  return out;
}

/** A random range, `hot` of the time inside the first 8 chunks so requests collide. */
function range(r: Rand, size: number, cb: number, maxLen: number, hot = 0.6): [number, number] {
  const span = r.chance(hot) ? Math.min(size, 8 * cb) : size;
  const len = 1 + r.int(Math.min(maxLen, span));
  return [r.int(span - len + 1), len];
}

oracleAvailability(test);

// Both data paths: inline (page-cache I/O on the event loop when nothing waits) and
// queued (every request through chunk locks and the thread pool).
const PATHS = [{ inlineIo: true, label: 'inline I/O' }, { inlineIo: false, label: 'thread pool only' }];

for (const seed of suiteSeeds(3, 7000)) for (const { inlineIo, label } of PATHS) {
  test(`hundreds of overlapping reads/writes/discards in flight match the model in issue order, ${label} (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t, { blockSize: r.pick([128, 128, 256]) }, { inlineIo });
      await s.pool.createThin(1, 12 * MiB);
      s.model.createThin(1, 12 * MiB);
      await s.pool.createThin(2, 3 * MiB);
      s.model.createThin(2, 3 * MiB);
      const b = new Burst(s);
      let snapped = false;
      for (let i = 0; i < 500; i++) {
        const id = r.chance(0.7) ? 1 : 2;
        const size = s.model.size(id);
        const op = r.weighted({ write: 55, read: 30, discard: 12, flush: 2, snap: 1 });
        if (op === 'write') {
          const [off, len] = range(r, size, s.cb, r.chance(0.2) ? 3 * s.cb : 6000);
          b.write(id, off, pattern(r.int(2 ** 31), len), r);
        } else if (op === 'read') {
          const [off, len] = range(r, size, s.cb, 3 * s.cb);
          b.read(id, off, len);
        } else if (op === 'discard') {
          if (r.chance(0.1)) {
            // More than 64 whole chunks: the pool's range-removal path.
            b.discard(1, r.int(10) * 1000, 70 * s.cb + r.int(s.cb));
          } else {
            const [off, len] = range(r, size, s.cb, 2 * s.cb);
            b.discard(id, off, len);
          }
        } else if (op === 'flush') {
          b.other(s.pool.flush());
        } else if (!snapped) {
          snapped = true;
          b.snap(3, 1);
        }
      }
      await b.settle();
      assert.ok(b.reads > 100);
      await verifyPool(t, s.pool, s.model);
    });
  });
}

for (const seed of suiteSeeds(2, 7100)) for (const { inlineIo, label } of PATHS) {
  test(`overlapping writes to one chunk apply in issue order, unmapped and shared, ${label} (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t, {}, { inlineIo });
      await s.pool.createThin(1, 2 * MiB);
      s.model.createThin(1, 2 * MiB);
      // Round 1: chunk 3 is unmapped; round 2: it is shared with a snapshot.
      for (const round of [1, 2]) {
        if (round === 2) {
          await s.pool.createSnap(2, 1);
          s.model.createSnap(2, 1);
        }
        const b = new Burst(s);
        for (let i = 0; i < 200; i++) {
          const off = 3 * s.cb + r.int(s.cb);
          const len = 1 + r.int(r.chance(0.1) ? s.cb : 3000);
          b.write(1, off, pattern(r.int(2 ** 31), Math.min(len, 2 * MiB - off)), r);
          if (r.chance(0.2)) b.read(1, 3 * s.cb, 2 * s.cb);
        }
        await b.settle();
        await checkContent(s.pool, s.model, { label: `round ${round}` });
        assert.equal(s.pool.status().usedDataBlocks, s.model.usedBlocks(), `round ${round}: one block per written chunk, sharing broken once`);
      }
      await verifyPool(t, s.pool, s.model);
    });
  });
}

test('a read issued after a write to the same chunk sees it; one issued before does not', async (t) => {
  const s = await makePool(t);
  await s.pool.createThin(1, 4 * MiB);
  s.model.createThin(1, 4 * MiB);
  const r = new Rand(7200);
  for (let round = 0; round < 20; round++) {
    const b = new Burst(s);
    for (let v = 0; v < 32; v++) {
      const off = v * s.cb + r.int(s.cb - 4096);
      b.read(1, v * s.cb, s.cb);
      b.write(1, off, pattern(r.int(2 ** 31), 4096));
      b.read(1, v * s.cb, s.cb);
      b.discard(1, off + 100, 50);
      b.read(1, off, 4096);
    }
    await b.settle();
  }
  await verifyPool(t, s.pool, s.model);
});

test('two first writes to one unmapped chunk allocate one block (and one shared chunk breaks once)', async (t) => {
  const s = await makePool(t);
  await s.pool.createThin(1, 4 * MiB);
  s.model.createThin(1, 4 * MiB);
  const b = new Burst(s);
  for (let v = 0; v < 50; v++) {
    b.write(1, v * s.cb + 10, pattern(v, 1000));
    b.write(1, v * s.cb + s.cb / 2, pattern(1000 + v, 2000));
  }
  await b.settle();
  assert.equal(s.pool.status().usedDataBlocks, 50, 'one block per chunk');
  assert.equal(s.pool.thinStatus(1).mappedSectors, 50 * s.cb / 512);
  await s.pool.createSnap(2, 1);
  s.model.createSnap(2, 1);
  const b2 = new Burst(s);
  for (let v = 0; v < 50; v++) {
    b2.write(2, v * s.cb, pattern(2000 + v, 100));
    b2.write(2, v * s.cb + 5000, pattern(3000 + v, 100));
  }
  await b2.settle();
  assert.equal(s.pool.status().usedDataBlocks, 100, 'each shared chunk was copied once');
  const meta = s.pool.status().metadataFile;
  await verifyPool(t, s.pool, s.model);
  const d = thinDump(t, meta);
  if (d) {
    assert.equal(blockMap(d, 1)!.size, 50);
    assert.equal(blockMap(d, 2)!.size, 50);
    assert.equal(new Set([...blockMap(d, 1)!.values(), ...blockMap(d, 2)!.values()]).size, 100, 'thin_dump: 100 distinct data blocks');
  }
});

for (const seed of suiteSeeds(2, 7300)) {
  test(`snapshots taken while writes are in flight capture the state at their issue point (seed ${seed})`, async (t) => {
    await seeded(t, seed, async () => {
      const r = new Rand(seed);
      const s = await makePool(t);
      await s.pool.createThin(1, 4 * MiB);
      s.model.createThin(1, 4 * MiB);
      for (let v = 0; v < 64; v += 2) {
        await s.pool.write(1, v * s.cb, pattern(seed + v, s.cb));
        s.model.write(1, v * s.cb, pattern(seed + v, s.cb));
      }
      const b = new Burst(s);
      let next = 2;
      for (let i = 0; i < 300; i++) {
        if (i % 60 === 30) b.snap(next++, 1);
        const [off, len] = range(r, 4 * MiB, s.cb, r.chance(0.3) ? 2 * s.cb : 5000, 0.3);
        if (r.chance(0.85)) b.write(1, off, pattern(r.int(2 ** 31), len));
        else if (r.chance(0.5)) b.discard(1, off, len);
        else b.read(1, off, len);
      }
      await b.settle();
      assert.equal(next, 7);
      await verifyPool(t, s.pool, s.model);
    });
  });
}

test('commits issued during in-flight provisioning never capture a leaked or unwritten block', async (t) => {
  const s = await makePool(t, {}, { commitInterval: 0 });
  const meta = s.pool.status().metadataFile;
  for (const id of [1, 2]) {
    await s.pool.createThin(id, 8 * MiB);
    s.model.createThin(id, 8 * MiB);
  }
  const copies: string[] = [];
  s.pool.on('commit', () => {
    const copy = path.join(s.dir, `committed-${copies.length}`);
    fs.copyFileSync(meta, copy);
    copies.push(copy);
  });
  const r = new Rand(7400);
  const b = new Burst(s);
  const order = Array.from({ length: 256 }, (_, i) => i).sort(() => r.next() - 0.5);
  for (let i = 0; i < order.length; i++) {
    const id = 1 + (order[i] % 2);
    const v = order[i] >> 1;
    // Full and partial first writes; never all-zero data.
    if (r.chance(0.5)) b.write(id, v * s.cb, pattern(v * 7 + id, s.cb));
    else b.write(id, v * s.cb + 512, pattern(v * 7 + id, 3000));
    if (i % 25 === 12) b.other(s.pool.commit());
  }
  await b.settle();
  assert.ok(copies.length >= 8, `${copies.length} commits were captured`);
  assert.equal(s.pool.status().usedDataBlocks, 256);
  await verifyPool(t, s.pool, s.model);
  // Every commit taken mid-flight is a consistent pool on its own, whose mappings are final
  // (each chunk was written once): same data block as at the end, so its data was written.
  const final = thinDump(t, meta);
  for (const [i, copy] of copies.entries()) {
    // thin_check 1.x costs ~0.5 s a run: all copies get our check, a sample the external ones.
    if (i === 0 || i === copies.length - 1 || i === copies.length >> 1) metadataOracles(t, copy, `${path.basename(copy)}: `);
    else ourCheck(copy, `${path.basename(copy)}: `);
    const d = thinDump(t, copy);
    if (!d || !final) continue;
    for (const id of dumpIds(d)) {
      const atEnd: Map<number, number> = blockMap(final, id)!;
      for (const [v, blk] of blockMap(d, id)!) {
        assert.equal(blk, atEnd.get(v), `${path.basename(copy)}: device ${id} chunk ${v} maps block ${blk}, not the block it ends up with`);
      }
    }
  }
});

test('deleteDevice issued behind in-flight writes waits for them; requests issued after it fail E_NO_DEVICE', async (t) => {
  const s = await makePool(t);
  for (const id of [1, 2]) {
    await s.pool.createThin(id, 4 * MiB);
    s.model.createThin(id, 4 * MiB);
  }
  const before: Promise<void>[] = [];
  for (let v = 0; v < 30; v++) before.push(s.pool.write(2, v * s.cb, pattern(v, s.cb)));
  const b = new Burst(s);
  for (let v = 0; v < 10; v++) b.write(1, v * s.cb + 3, pattern(100 + v, 5000));
  const deleted = s.pool.deleteDevice(2);
  const after = [
    ...Array.from({ length: 10 }, (_, v) => s.pool.write(2, (30 + v) * s.cb, pattern(v, 100))),
    s.pool.read(2, 0, 100),
    s.pool.discard(2, 0, s.cb),
  ];
  for (let v = 10; v < 20; v++) b.write(1, v * s.cb + 3, pattern(100 + v, 5000));
  await Promise.all(before);
  await deleted;
  s.model.deleteDevice(2);
  const rs = await Promise.allSettled(after);
  for (const [i, r] of rs.entries()) {
    assert.equal(r.status, 'rejected', `request ${i} issued after the delete`);
    assert.equal((r as PromiseRejectedResult).reason.code, 'E_NO_DEVICE');
  }
  await b.settle();
  assert.equal(s.pool.status().usedDataBlocks, s.model.usedBlocks(), 'the deleted device left no block behind');
  await verifyPool(t, s.pool, s.model);
});

test('close() with requests in flight: each request completes before the files close or rejects; no I/O reaches another file', async (t) => {
  const s = await makePool(t);
  await s.pool.createThin(1, 16 * MiB);
  s.model.createThin(1, 16 * MiB);
  for (let v = 0; v < 256; v++) {
    await s.pool.write(1, v * s.cb, pattern(v, s.cb));
    s.model.write(1, v * s.cb, pattern(v, s.cb));
  }
  await s.pool.flush();
  const reads = Array.from({ length: 256 }, (_, v) => s.pool.read(1, v * s.cb, s.cb).then(
    (got) => { assert.deepEqual(got, pattern(v, s.cb), `read ${v} resolved with the wrong bytes`); return true; },
    () => false,
  ));
  const writes = Array.from({ length: 256 }, (_, v) => s.pool.write(1, v * s.cb, pattern(1000 + v, s.cb)).then(() => true, () => false));
  const closing = s.pool.close();
  // Files opened while the pool closes may get the numbers of the descriptors it closes.
  const bystander = path.join(s.dir, 'bystander');
  fs.writeFileSync(bystander, Buffer.alloc(16 * MiB, 0x55));
  const fds = [fs.openSync(bystander, 'r+'), fs.openSync(bystander, 'r+')];
  await closing;
  fds.push(fs.openSync(bystander, 'r+'), fs.openSync(bystander, 'r+'), fs.openSync(bystander, 'r+'));
  const [readOk, writeOk] = [await Promise.all(reads), await Promise.all(writes)];
  for (const fd of fds) fs.closeSync(fd);
  const by = fs.readFileSync(bystander);
  let touched = 0;
  for (const x of by) if (x !== 0x55) touched++;
  assert.equal(touched, 0, `${touched} bytes of a file opened during close() were overwritten by the pool's in-flight writes`);
  // Acknowledged writes are in the pool.
  for (let v = 0; v < 256; v++) if (writeOk[v]) s.model.write(1, v * s.cb, pattern(1000 + v, s.cb));
  t.diagnostic(`reads ok ${readOk.filter(Boolean).length}/256, writes ok ${writeOk.filter(Boolean).length}/256`);
  s.pool = Pool.open(s.dir);
  await verifyPool(t, s.pool, s.model);
});
