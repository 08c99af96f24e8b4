/**
 * Discard passdown and crashes (the crash farm's discard finding, seed 18000 point 5).
 * A sharing break moves device 2 off a block it shared with device 1; a discard of device
 * 1 then drops that block's count to 0 in the same open transaction. The committed
 * metadata still maps device 2 to the old block, so until that transaction commits the
 * block must keep its bytes: a punch before the commit turned device 2's durable content
 * into zeros after a kill. The child (fixtures/passdown-child) is killed with SIGKILL
 * before any commit; the pool must then read as committed, pass checkMetadata and both
 * thin_checks. A second child commits instead: then the block is free and punched out of
 * the data file, which thin_dump's mappings (the real tool's view) and the file's
 * allocation show.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hot } from '../../src/hot';
import { Pool } from '../../src/pool/pool';
import { pattern } from '../../support/random';
import { MiB, metadataOracles, oracleAvailability, tempDir, thinDump } from '../helpers/pool-model';

const CHILD = path.resolve(__dirname, 'fixtures', 'passdown-child.js');

oracleAvailability(test);

/** A passdown pool: device 1 chunk 0 written with pattern(1), snapshot 2 of 1, all committed. */
async function sharedPool(dir: string): Promise<number> {
  const pool = Pool.create(dir, { dataSize: 16 * MiB, metadataSize: 4 * MiB, discard: 'passdown' });
  try {
    await pool.createThin(1, 1 * MiB);
    await pool.write(1, 0, pattern(1, pool.chunkBytes));
    await pool.flush();
    await pool.createSnap(2, 1);
    return pool.chunkBytes;
  } finally {
    await pool.close();
  }
}

/** Run the child; resolves with its stdout once it printed `until` (and kills it when asked). */
async function runChild(dir: string, arg: string, until: string, kill: boolean): Promise<void> {
  const child = spawn(process.execPath, [CHILD, arg], { env: { ...process.env, PASSDOWN_POOL: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b) => { out += b; if (out.includes(until)) resolve(); });
    child.once('close', (code) => { if (!out.includes(until)) reject(new Error(`passdown child exited ${code} before "${until}": ${err}`)); });
  });
  if (kill) child.kill('SIGKILL');
  await exited;
}

/** Bytes equal, or a failure naming the first sector that differs. */
function same(got: Uint8Array, want: Uint8Array, what: string): void {
  const a = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  const b = Buffer.from(want.buffer, want.byteOffset, want.byteLength);
  if (a.equals(b)) return;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  assert.fail(`${what}: differs from byte ${i} (sector ${Math.floor(i / 512)}): got ${a[i]}, want ${b[i]}${a.subarray(i).every((x) => x === 0) ? ' (zeros from there on)' : ''}`);
}

function allocatedSectors(file: string): number {
  return fs.statSync(file).blocks;
}

test('a block freed by a discard is punched only after the unmap commits: a kill before keeps the snapshot\'s committed data', async (t) => {
  const dir = tempDir(t);
  const cb = await sharedPool(dir);
  await runChild(dir, 'kill', 'ready', true);
  metadataOracles(t, path.join(dir, 'metadata'), 'after the kill');
  const pool = Pool.open(dir, { readOnly: true, commitInterval: 0 });
  try {
    same(await pool.read(2, 0, cb), pattern(1, cb), 'device 2 chunk 0 (committed: shared with device 1)');
    same(await pool.read(1, 0, cb), pattern(1, cb), 'device 1 chunk 0 (its discard was never committed)');
  } finally {
    await pool.close();
  }
});

test('once the unmap commits, the freed block is punched out of the data file', async (t) => {
  const dir = tempDir(t);
  const cb = await sharedPool(dir);
  const dataFile = path.join(dir, 'data');
  await runChild(dir, 'commit', 'committed', false);
  metadataOracles(t, path.join(dir, 'metadata'), 'after the commit');
  const dump = thinDump(t, path.join(dir, 'metadata'));
  const pool = Pool.open(dir, { readOnly: true, commitInterval: 0 });
  try {
    same(await pool.read(2, 0, cb), pattern(2, cb), 'device 2 chunk 0 (its own write)');
    same(await pool.read(1, 0, cb), new Uint8Array(cb), 'device 1 chunk 0 (discarded)');
  } finally {
    await pool.close();
  }
  if (dump) {
    // thin_dump's view: device 1 maps nothing, device 2 maps one block; the block both
    // shared before is mapped by neither, and its bytes are gone from the data file.
    const used = new Set<number>();
    for (const d of dump.devices) for (const m of d.mappings) used.add(m.data);
    assert.equal(used.size, 1, `one data block is mapped after the commit (${[...used]})`);
    if (hot.native) {
      const held = Buffer.alloc(cb);
      const fd = fs.openSync(dataFile, 'r');
      try {
        for (let b = 0; b < 2; b++) {
          if (used.has(b)) continue;
          fs.readSync(fd, held, 0, cb, b * cb);
          assert.ok(held.every((x) => x === 0), `the freed block ${b} reads as zeros (punched)`);
        }
      } finally {
        fs.closeSync(fd);
      }
      assert.ok(allocatedSectors(dataFile) * 512 <= 2 * cb, `the data file holds at most the mapped block and the new one (${allocatedSectors(dataFile)} sectors allocated)`);
    } else {
      t.diagnostic(`SKIPPED the host-allocation check: the TypeScript twin cannot punch holes (${hot.loadError})`);
    }
  }
});
