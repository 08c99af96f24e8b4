/**
 * The pool's health against dm-thin's rules (docs/reliability.md), on in-memory devices
 * with injected faults (MemoryDevice): a failed sync of the data or the metadata device,
 * a failed metadata write, a failed periodic commit, and a data write that fails on one
 * chunk of several. The model is the kernel's: after metadata_operation_failed the open
 * transaction is gone, needs_check is set in the superblock that is durable on the
 * device, the pool is ro (reads and overwrites of mapped chunks only) or fail (nothing),
 * and no later flush succeeds. The durable images are checked by thin_check too.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MemoryDevice } from '../../src/io/memory-device';
import { Pool } from '../../src/pool/pool';
import { ThinMetadata } from '../../src/thin/metadata';
import { pattern } from '../../support/random';
import { skipPart, tools09, tools1x } from '../helpers/oracle';
import { MiB, ourCheck, rejection, tempDir } from '../helpers/pool-model';

const CHUNK = 64 * 1024;

interface MemPool { dir: string; pool: Pool; meta: MemoryDevice; data: MemoryDevice; modes: string[] }

/** A pool made on files (4 MiB data, one 2 MiB thin device), then opened on in-memory copies of them. */
async function memoryPool(t: TestContext, opts: { commitInterval?: number } = {}): Promise<MemPool> {
  const dir = tempDir(t, 'thinsim-health-');
  const made = Pool.create(dir, { dataSize: 4 * MiB, metadataSize: 4 * MiB });
  await made.createThin(1, 2 * MiB);
  await made.close();
  const meta = MemoryDevice.from(fs.readFileSync(path.join(dir, 'metadata')), 'memory metadata');
  const data = MemoryDevice.from(fs.readFileSync(path.join(dir, 'data')), 'memory data');
  const pool = Pool.open(dir, { devices: { metadata: meta, data }, commitInterval: opts.commitInterval ?? 0 });
  const modes: string[] = [];
  pool.on('mode', (m: string) => modes.push(m));
  t.after(() => pool.close());
  return { dir, pool, meta, data, modes };
}

/** Reopen the pool in `dir` on what a power cut would leave of both devices now. */
function reopenDurable(t: TestContext, p: MemPool): Pool {
  const pool = Pool.open(p.dir, { devices: { metadata: MemoryDevice.from(p.meta.durableImage()), data: MemoryDevice.from(p.data.durableImage()) }, commitInterval: 0 });
  t.after(() => pool.close());
  return pool;
}

/** Our checker and thin_check (1.x, 0.9.0) on the durable metadata image. */
function checkDurable(t: TestContext, p: MemPool): void {
  const file = path.join(p.dir, 'durable-metadata');
  fs.writeFileSync(file, p.meta.durableImage());
  ourCheck(file, 'durable image: ');
  for (const [name, tools] of [['thin_check 1.x', tools1x()], ['thin_check 0.9.0', tools09()]] as const) {
    if (!tools) { skipPart(t, name, 'not installed'); continue; }
    const r = tools.check(file);
    assert.equal(r.status, 0, `${name} on the durable image: ${r.stderr}${r.stdout}`);
  }
}

function needsCheckOnDisk(meta: MemoryDevice): boolean {
  return ThinMetadata.open(MemoryDevice.from(meta.durableImage())).needsCheck;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return (await rejection(p)).code;
}

/** What ro allows and refuses, on a pool whose chunk `mapped` of device 1 was committed. */
async function assertReadOnlyRules(pool: Pool, mapped: number): Promise<void> {
  const over = pattern(77, CHUNK);
  await pool.write(1, mapped * CHUNK, over); // an overwrite of a mapped, unshared chunk still works
  assert.ok((await pool.read(1, mapped * CHUNK, CHUNK)).equals(over), 'the overwrite reads back');
  assert.equal(await codeOf(pool.write(1, 5 * CHUNK, pattern(1, 100))), 'E_READ_ONLY', 'a write that provisions is refused');
  assert.equal(await codeOf(pool.discard(1, mapped * CHUNK, CHUNK)), 'E_READ_ONLY', 'a discard is refused');
  assert.equal(await codeOf(pool.createThin(2, MiB)), 'E_READ_ONLY', 'a message is refused');
  assert.equal(await codeOf(pool.flush()), 'E_IO', 'a flush fails: nothing can be committed');
}

for (const which of ['data', 'metadata'] as const) {
  test(`a failed sync of the ${which} device fails the flush, turns the pool ro with needs_check on disk, and every later flush fails too`, async (t) => {
    const p = await memoryPool(t);
    const { pool } = p;
    const kept = pattern(5, CHUNK);
    await pool.write(1, 2 * CHUNK, kept);
    await pool.flush();
    const lost = pattern(6, CHUNK);
    await pool.write(1, 0, lost); // provisions chunk 0 in the open transaction
    p[which === 'data' ? 'data' : 'meta'].faults.failSyncAt = 1;
    const e = await rejection(pool.flush());
    assert.equal(e.code, 'E_IO', e.message);
    assert.equal(pool.mode, 'ro');
    assert.deepEqual(p.modes, ['ro']);
    assert.match(pool.modeReason ?? '', which === 'data' ? /sync of the data device/ : /commit failed/);
    assert.ok(needsCheckOnDisk(p.meta), 'needs_check is set in the durable superblock');
    // The device syncs fine again, but what the failed sync dropped is not coming back.
    assert.equal(await codeOf(pool.flush()), 'E_IO', 'the next flush fails as well');
    assert.equal(await codeOf(pool.flush()), 'E_IO', 'and the one after');
    // The transaction was rolled back: chunk 0's mapping (never durable) is gone.
    assert.equal(pool.lookup(1, 0), undefined);
    assert.ok((await pool.read(1, 0, CHUNK)).equals(Buffer.alloc(CHUNK)), 'the rolled-back chunk reads as zeros');
    assert.ok((await pool.read(1, 2 * CHUNK, CHUNK)).equals(kept), 'the committed chunk reads back');
    await assertReadOnlyRules(pool, 2);
    const st = pool.status();
    assert.equal(st.mode, 'ro');
    assert.equal(st.needsCheck, true);
    assert.match(st.line, / ro .* needs_check /);
    await pool.close();
    checkDurable(t, p);

    const again = reopenDurable(t, p);
    assert.equal(again.mode, 'ro', 'reopened: still ro (needs_check)');
    assert.match(again.modeReason ?? '', /thin_check/);
    assert.ok((await again.read(1, 2 * CHUNK, CHUNK)).equals(kept), 'reopened: the committed chunk is there');
    assert.equal(again.lookup(1, 0), undefined, 'reopened: the unflushed provisioning is not');
    const refused = await rejection(again.write(1, 6 * CHUNK, pattern(2, 10)));
    assert.equal(refused.code, 'E_READ_ONLY');
    assert.match(refused.message, /thin_check --clear-needs-check-flag/);
    assert.equal(await codeOf(again.flush()), 'E_IO');
  });
}

test('a metadata write that keeps failing: the commit fails, needs_check cannot be written, the pool is in fail mode and every request fails', async (t) => {
  const p = await memoryPool(t);
  const { pool, meta } = p;
  await pool.write(1, 0, pattern(3, CHUNK));
  meta.faults.failWriteRange = [0, meta.size()];
  assert.equal(await codeOf(pool.flush()), 'E_IO');
  assert.equal(pool.mode, 'fail');
  assert.match(pool.modeReason ?? '', /needs_check/);
  assert.equal(await codeOf(pool.read(1, 0, 512)), 'E_IO', 'a read fails');
  assert.equal(await codeOf(pool.write(1, 0, pattern(4, 512))), 'E_IO', 'an overwrite fails');
  assert.equal(await codeOf(pool.flush()), 'E_IO', 'a flush fails');
  assert.equal(pool.status().line, 'Fail', "the kernel's status line in fail mode");
  await pool.close();
  meta.faults.failWriteRange = undefined;
  assert.equal(needsCheckOnDisk(meta), false, 'the flag could not be written: the previous commit is what is on disk');
  checkDurable(t, p);
});

test('a metadata read error inside a metadata operation (a discard\'s unmap): ro with needs_check on disk; the committed data stays readable', async (t) => {
  const p = await memoryPool(t);
  const kept = pattern(9, CHUNK);
  await p.pool.write(1, CHUNK, kept);
  await p.pool.close();
  // A fresh open: nothing of the mapping tree is cached yet. Its top-level node fails to read.
  const root = ThinMetadata.open(MemoryDevice.from(p.meta.image())).superblock().dataMappingRoot;
  const pool = Pool.open(p.dir, { devices: { metadata: p.meta, data: p.data }, commitInterval: 0 });
  t.after(() => pool.close());
  p.meta.faults.failReadRange = [root * 4096, (root + 1) * 4096];
  const e = await rejection(pool.discard(1, 0, CHUNK));
  assert.equal(e.code, 'E_IO', e.message);
  assert.equal(pool.mode, 'ro');
  assert.match(pool.modeReason ?? '', /discard failed: injected read error/);
  assert.ok(needsCheckOnDisk(p.meta));
  p.meta.faults.failReadRange = undefined;
  assert.ok((await pool.read(1, CHUNK, CHUNK)).equals(kept), 'the committed chunk reads back');
  assert.equal(await codeOf(pool.flush()), 'E_IO');
});

test('a metadata read error that also breaks the rollback: fail mode', async (t) => {
  const p = await memoryPool(t);
  await p.pool.close();
  const pool = Pool.open(p.dir, { devices: { metadata: p.meta, data: p.data }, commitInterval: 0 });
  t.after(() => pool.close());
  p.meta.faults.failReadRange = [4096, p.meta.size()]; // every block but the superblock
  assert.equal(await codeOf(pool.discard(1, 0, CHUNK)), 'E_IO');
  assert.equal(pool.mode, 'fail');
  assert.match(pool.modeReason ?? '', /aborting the metadata transaction failed/);
  assert.equal(await codeOf(pool.read(1, 0, 512)), 'E_IO');
  p.meta.faults.failReadRange = undefined;
  assert.ok(needsCheckOnDisk(p.meta), 'the flag itself could still be written');
});

test('the periodic commit does not swallow its failure: the pool turns ro and the next flush fails', async (t) => {
  const p = await memoryPool(t, { commitInterval: 20 });
  const { pool } = p;
  const turned = new Promise<void>((resolve) => pool.once('mode', () => resolve()));
  p.data.faults.failSyncAt = 1;
  await pool.write(1, 0, pattern(8, CHUNK));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), 10_000); });
  assert.notEqual(await Promise.race([turned, late]), 'late', 'the periodic commit moved the pool out of rw');
  clearTimeout(timer);
  assert.equal(pool.mode, 'ro');
  assert.equal(p.data.failedSyncs, 1);
  assert.equal(await codeOf(pool.flush()), 'E_IO');
  assert.ok(needsCheckOnDisk(p.meta));
});

test('a write of several chunks that fails on one settles the others before it fails (no snapshot under an in-place write)', async (t) => {
  const p = await memoryPool(t);
  const { pool, data } = p;
  await pool.write(1, 0, pattern(1, 4 * CHUNK));
  await pool.flush();
  const bad = pool.lookup(1, 2)!.block;
  data.faults.asyncDelayMs = 20; // healthy writes take a while; the failing one answers at once
  data.faults.failWriteRange = [bad * CHUNK, (bad + 1) * CHUNK];
  const next = pattern(2, 4 * CHUNK);
  const w = pool.write(1, 0, next);
  const snap = pool.createSnap(2, 1); // queued behind the write on device 1's gate
  const e = await rejection(w);
  assert.equal(e.code, 'E_IO');
  assert.equal(data.inflight, 0, 'no chunk of the failed write is still being written when it fails');
  await snap;
  data.faults.failWriteRange = undefined;
  data.faults.asyncDelayMs = undefined;
  for (const c of [0, 1, 3]) {
    assert.ok((await pool.read(2, c * CHUNK, CHUNK)).equals(next.subarray(c * CHUNK, (c + 1) * CHUNK)), `the snapshot holds chunk ${c} as written`);
  }
  assert.equal(pool.mode, 'rw', 'a failed data write fails its request only');
  await pool.flush();
});

test('a discard of several chunks that fails on one settles the others before it fails', async (t) => {
  const p = await memoryPool(t);
  const { pool, data } = p;
  await pool.write(1, 0, pattern(1, 4 * CHUNK));
  await pool.flush();
  const head = pool.lookup(1, 0)!.block;
  data.faults.asyncDelayMs = 20;
  data.faults.failWriteRange = [head * CHUNK, (head + 1) * CHUNK];
  const e = await rejection(pool.discard(1, CHUNK / 2, 3 * CHUNK));
  assert.equal(e.code, 'E_IO');
  assert.equal(data.inflight, 0, 'no piece of the failed discard is still running when it fails');
  data.faults.failWriteRange = undefined;
  data.faults.asyncDelayMs = undefined;
  assert.equal(pool.lookup(1, 1), undefined, 'whole chunk 1 was unmapped');
  assert.equal(pool.lookup(1, 2), undefined, 'whole chunk 2 was unmapped');
  const tail = await pool.read(1, 3 * CHUNK, CHUNK);
  assert.ok(tail.subarray(0, CHUNK / 2).equals(Buffer.alloc(CHUNK / 2)), 'the partial tail was zeroed');
});

test('misuse changes nothing: the pool stays rw', async (t) => {
  const { pool, modes } = await memoryPool(t);
  assert.equal(await codeOf(pool.createThin(1, MiB)), 'E_DEVICE_EXISTS');
  assert.equal(await codeOf(pool.write(1, 2 * MiB, pattern(1, 1))), 'E_INVALID');
  assert.equal(await codeOf(pool.setTransactionId(7, 8)), 'E_TRANSACTION_MISMATCH');
  assert.equal(pool.mode, 'rw');
  assert.deepEqual(modes, []);
  await pool.write(1, 0, pattern(1, 10));
  await pool.flush();
});

test('open refuses a data device shorter than the metadata says, naming both sizes', async (t) => {
  const dir = tempDir(t, 'thinsim-health-');
  const made = Pool.create(dir, { dataSize: 4 * MiB, metadataSize: 4 * MiB });
  await made.close();
  fs.truncateSync(path.join(dir, 'data'), 2 * MiB);
  for (const readOnly of [false, true]) {
    let e: (Error & { code?: string }) | undefined;
    try { Pool.open(dir, { readOnly }); } catch (x) { e = x as Error & { code?: string }; }
    assert.equal(e?.code, 'E_TOO_SMALL', `readOnly ${readOnly}`);
    assert.match(e!.message, /2097152 bytes/);
    assert.match(e!.message, /4194304 bytes/);
  }
  fs.truncateSync(path.join(dir, 'data'), 4 * MiB);
  await Pool.open(dir).close(); // and the lock was given back by the refused opens
});

test('create refuses a data size below one data block, before making anything', (t) => {
  const dir = tempDir(t, 'thinsim-health-');
  for (const dataSize of [0, 4096, CHUNK - 1]) {
    let e: (Error & { code?: string }) | undefined;
    try { Pool.create(path.join(dir, `p${dataSize}`), { dataSize, metadataSize: 4 * MiB }); } catch (x) { e = x as Error & { code?: string }; }
    assert.equal(e?.code, 'E_INVALID', `data size ${dataSize}`);
    assert.match(e!.message, /65536 bytes/);
    assert.equal(fs.existsSync(path.join(dir, `p${dataSize}`)), false);
  }
});

test('a failed passdown punch after the unmap committed is reported (\'passdown-error\'), and nothing else changes: the flush succeeded, the pool stays rw, the block is free', async (t) => {
  const p = await memoryPool(t);
  const { pool } = p;
  await pool.write(1, 3 * CHUNK, pattern(8, CHUNK));
  await pool.flush();
  const block = pool.lookup(1, 3)!.block;
  const reports: Array<{ firstBlock: number; blocks: number; message: string }> = [];
  pool.on('passdown-error', (e) => reports.push(e));
  const used = pool.status().usedDataBlocks;
  await pool.discard(1, 3 * CHUNK, CHUNK);
  assert.equal(reports.length, 0, 'nothing is punched before the unmap commits');
  p.data.faults.failWriteRange = [block * CHUNK, (block + 1) * CHUNK];
  await pool.flush();
  assert.equal(reports.length, 1, 'one report for the one run of freed blocks');
  assert.equal(reports[0].firstBlock, block);
  assert.equal(reports[0].blocks, 1);
  assert.match(reports[0].message, new RegExp(`discard passdown of data blocks ${block}\\.\\.${block} failed .*injected`));
  assert.equal(pool.mode, 'rw');
  assert.deepEqual(p.modes, []);
  assert.equal(pool.status().usedDataBlocks, used - 1, 'the block is free all the same (the kernel ignores a failed passdown too)');
  assert.equal(pool.lookup(1, 3), undefined);
  p.data.faults.failWriteRange = undefined;
  await pool.close();
  checkDurable(t, p);
});
