/**
 * Pool suite, snapshot operations (targets 2 and 4 of the pool-engine issue):
 *  2. 4 KiB random writes to a fresh snapshot, each breaking sharing of a 64 KiB chunk,
 *     flush included: IOPS and the ratio to plain 4 KiB random writes on a file (same count,
 *     same offsets, fdatasync included), QD1 and QD8, best of TRIALS, alternating; no target
 *     (each write copies 64 KiB). Peer row with a target: a qcow2 overlay with 64 KiB
 *     clusters written by `qemu-img bench` (skipped when qemu-img is missing).
 *  4. create_snap of a device with 64 GiB mapped within 1.5x the time of one with 1 GiB
 *     mapped: medians of interleaved snapshots, metadata built without data I/O.
 * Part of pool.bench.ts.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FileDevice } from '../src/io/file-device';
import { Pool } from '../src/pool/pool';
import { ThinMetadata } from '../src/thin/metadata';
import { Rand, pattern } from '../support/random';
import type { BenchRow } from './bench-suite';
import {
  BLOCK_SECTORS, CHUNK, GiB, SEQ_BYTES, TRIALS,
  alternate, details, median, queue, row, sig4, timed, type Mapped,
} from './pool-common';

/** Sharing breaks per trial in case 2: one 4 KiB write in each of this many distinct chunks. */
const COW_WRITES = 4096;
/** Snapshots timed per device in case 4. */
const SNAPS = 9;

// ------------------------------------------------------------------ 2. sharing breaks on a snapshot

export async function cowWrites(m: Mapped): Promise<BenchRow[]> {
  const rand = new Rand(2);
  const chunks = SEQ_BYTES / CHUNK;
  const count = Math.min(COW_WRITES, chunks);
  // One 4 KiB write in each of `count` distinct chunks, in random order.
  const offsets = rand.shuffle(Array.from({ length: chunks }, (_, i) => i))
    .slice(0, count)
    .map((c) => c * CHUNK + rand.int(CHUNK / 4096) * 4096);
  const buf = pattern(3, 4096);
  const fh = await fsp.open(m.file, 'r+');
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  try {
    for (const depth of [1, 8]) {
      const oursSubmit: number[] = [];
      const { ours, base } = await alternate(TRIALS, () => cowTrial(m, depth, offsets, buf, oursSubmit), () => timed(async () => {
        await queue(count, depth, (i) => fh.write(buf, 0, 4096, offsets[i]));
        await fh.datasync();
      }));
      const o = count / Math.min(...ours);
      const b = count / Math.min(...base);
      raw[`qd${depth}`] = {
        oursSeconds: ours.map(sig4), oursBeforeFlushSeconds: oursSubmit.map(sig4), baselineSeconds: base.map(sig4),
        oursIops: Math.round(o), oursIopsBeforeFlush: Math.round(count / Math.min(...oursSubmit)), baselineIops: Math.round(b),
      };
      rows.push(row(
        `4 KiB random writes breaking sharing of 64 KiB chunks on a snapshot, QD${depth}, + flush`,
        'pool.write to snapshot + flush', 'fs.promises 4 KiB write to file + fdatasync', o, b, undefined,
        `${count} writes, same offsets; no target (each copies 64 KiB); ${Math.round(o)} IOPS incl. flush, ${Math.round(count / Math.min(...oursSubmit))} before it`,
      ));
    }
  } finally {
    await fh.close();
  }
  const qemu = await cowVsQemuImg(m, offsets, buf);
  if (qemu) rows.push(qemu.row);
  details.cowWrites = { writes: count, chunkBytes: CHUNK, copyBytesPerWrite: CHUNK, ...raw, qemuImgBench: qemu?.raw };
  return rows;
}

let nextSnap = 2001;

/**
 * One trial: a fresh snapshot of the untouched origin, so every write breaks sharing;
 * `offsets.length` 4 KiB writes at queue depth `depth`, then a flush. Seconds, flush
 * included; the time before the flush goes to `submit`.
 */
async function cowTrial(m: Mapped, depth: number, offsets: number[], buf: Uint8Array, submit: number[]): Promise<number> {
  const id = nextSnap++;
  await m.pool.createSnap(id, m.dev);
  const before = m.pool.status().usedDataBlocks;
  const t0 = performance.now();
  await queue(offsets.length, depth, (i) => m.pool.write(id, offsets[i], buf));
  submit.push((performance.now() - t0) / 1000);
  await m.pool.flush();
  const secs = (performance.now() - t0) / 1000;
  const broke = m.pool.status().usedDataBlocks - before;
  if (broke !== offsets.length) throw new Error(`cow writes: expected ${offsets.length} sharing breaks, got ${broke}`);
  await m.pool.deleteDevice(id);
  await m.pool.flush();
  return secs;
}

/**
 * The copy-on-write peer: `qemu-img bench -w -s 4k -S 64k -d 1` on a fresh qcow2 overlay
 * (64 KiB clusters) of a raw file holding the origin's bytes: the same number of 4 KiB
 * writes, each into its own cluster, so each copies 64 KiB from the backing file. qemu's
 * "Run completed" time (requests only, no open, no final flush) against ours with the
 * flush: the comparison leans towards qemu. Skipped when qemu-img is missing.
 */
async function cowVsQemuImg(m: Mapped, offsets: number[], buf: Uint8Array): Promise<{ row: BenchRow; raw: unknown } | undefined> {
  if (spawnSync('qemu-img', ['--version']).status !== 0) {
    console.log('pool: qemu-img not found: the qcow2 copy-on-write comparison is skipped (apt-get install qemu-utils)');
    return undefined;
  }
  const overlay = path.join(path.dirname(m.file), 'cow-overlay.qcow2');
  const submit: number[] = [];
  const { ours, base } = await alternate(TRIALS, () => cowTrial(m, 1, offsets, buf, submit), async () => {
    fs.rmSync(overlay, { force: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', '-b', m.file, '-F', 'raw', overlay]);
    const out = execFileSync('qemu-img', ['bench', '-w', '-s', '4096', '-S', `${CHUNK}`, '-c', `${offsets.length}`, '-d', '1', '-f', 'qcow2', overlay], { encoding: 'utf8' });
    const secs = /Run completed in ([\d.]+) seconds/.exec(out);
    if (!secs) throw new Error(`qemu-img bench: no run time in ${out}`);
    return Number(secs[1]);
  });
  fs.rmSync(overlay, { force: true });
  const o = offsets.length / Math.min(...ours);
  const b = offsets.length / Math.min(...base);
  return {
    raw: { oursSeconds: ours.map(sig4), qemuSeconds: base.map(sig4), oursIops: Math.round(o), qemuIops: Math.round(b) },
    row: row(
      '4 KiB writes breaking sharing of 64 KiB chunks, QD1: pool vs qcow2 overlay (64K clusters)',
      'pool.write to snapshot + flush', 'qemu-img bench -w -s 4k -S 64k -d 1', o, b, 1.0,
      `${offsets.length} writes; best of ${TRIALS}, interleaved; ${Math.round(o)} vs ${Math.round(b)} IOPS (qemu: requests only, no flush)`,
    ),
  };
}

// ------------------------------------------------------------------ 4. create_snap is O(1)

/**
 * A pool whose thin device 1 has `blocks` chunks mapped, built in metadata only
 * (allocate + insertMapping, then one commit): the data file stays sparse.
 */
async function metadataOnlyPool(dir: string, blocks: number, dataBlocks: number): Promise<{ pool: Pool; buildSeconds: number }> {
  // Build the metadata offline (as thin_restore would), then let the pool adopt it.
  fs.mkdirSync(dir, { recursive: true });
  const metaFile = path.join(dir, 'prebuilt-metadata');
  fs.writeFileSync(metaFile, '');
  fs.truncateSync(metaFile, 2 * GiB);
  const dev = new FileDevice(metaFile);
  const t0 = performance.now();
  try {
    const md = ThinMetadata.format(dev, { dataBlockSize: BLOCK_SECTORS, nrDataBlocks: dataBlocks });
    md.createThin(1);
    for (let v = 0; v < blocks; v++) {
      const b = md.allocateDataBlock();
      if (b < 0) throw new Error('create_snap bench: out of data space while building');
      md.insertMapping(1, v, b);
    }
    md.commit();
  } finally {
    dev.close();
  }
  const buildSeconds = (performance.now() - t0) / 1000;
  const pool = Pool.create(dir, { dataSize: dataBlocks * CHUNK, metadataDev: metaFile });
  if (pool.thinStatus(1).mappedSectors !== blocks * BLOCK_SECTORS) throw new Error('create_snap bench: mapping count mismatch');
  return { pool, buildSeconds };
}

export async function createSnapScaling(root: string): Promise<BenchRow[]> {
  const small = 1 * GiB / CHUNK;
  const big = 64 * GiB / CHUNK;
  // Same data device size for both, so only the mapped count differs.
  const dataBlocks = big + 16384;
  const a = await metadataOnlyPool(path.join(root, 'snap-1g'), small, dataBlocks);
  const z = await metadataOnlyPool(path.join(root, 'snap-64g'), big, dataBlocks);
  const tSmall: number[] = [];
  const tBig: number[] = [];
  try {
    // Interleaved, so slow phases of the disk hit both sides alike.
    for (let i = 0; i < SNAPS; i++) {
      tSmall.push(await timed(() => a.pool.createSnap(10 + i, 1)));
      tBig.push(await timed(() => z.pool.createSnap(10 + i, 1)));
    }
    const dataFile = z.pool.status().dataFile;
    const allocated = fs.statSync(dataFile).blocks * 512;
    details.createSnap = {
      mappedSmall: small, mappedBig: big, buildSecondsSmall: sig4(a.buildSeconds), buildSecondsBig: sig4(z.buildSeconds),
      smallMs: tSmall.map((t) => sig4(t * 1000)), bigMs: tBig.map((t) => sig4(t * 1000)),
      metadataBlocksBig: z.pool.status().usedMetadataBlocks, dataFileAllocatedBytes: allocated,
    };
  } finally {
    await a.pool.close();
    await z.pool.close();
  }
  const ms = median(tSmall);
  const mb = median(tBig);
  return [row(
    'create_snap, 64 GiB mapped vs 1 GiB mapped (1,048,576 vs 16,384 mappings)',
    'snap of 64 GiB', 'snap of 1 GiB', 1 / mb, 1 / ms, sig4(1 / 1.5),
    `median of ${SNAPS}: ${sig4(mb * 1000)} vs ${sig4(ms * 1000)} ms (target: time <= 1.5x); includes commit + fsyncs`,
  )];
}
