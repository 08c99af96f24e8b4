/**
 * Pool suite, in-process data path (targets 1 and 3 of the pool-engine issue):
 *  1. sequential 64 KiB writes provisioning a fresh thin device, final flush() included,
 *     >= 0.7x a plain sequential write of the same bytes to a sparse file (fs.promises, same
 *     queue depth, fdatasync included); QD1 and QD8, best of WRITE_TRIALS, alternating.
 *  3. sequential read of a fully mapped device >= 0.8x a plain fs.promises read of a file of
 *     the same bytes, both warm in the page cache; 64 KiB and 1 MiB requests, interleaved
 *     best-per-piece passes (see interleaved() in pool-common.ts).
 * Part of pool.bench.ts.
 */

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pattern } from '../support/random';
import type { BenchRow } from './bench-suite';
import {
  CHUNK, KiB, MiB, READ_PASSES, SEQ_BYTES,
  alternate, details, interleaved, mibps, newPool, queue, row, sig4, sparseFile, timed, type Mapped,
} from './pool-common';

/** The sequential-write target sits closest to its ratio: two more trials. */
const WRITE_TRIALS = 5;
/** Segment of a sequential-read pass: each side reads this much, then the other side. */
const READ_SEGMENT = 2 * MiB;

// ------------------------------------------------------------------ 1. sequential provisioning writes

export async function seqWrite(root: string): Promise<BenchRow[]> {
  const n = SEQ_BYTES / CHUNK;
  const buf = pattern(1, CHUNK);
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  for (const depth of [1, 8]) {
    let trial = 0;
    const { ours, base } = await alternate(WRITE_TRIALS, async () => {
      const dir = path.join(root, `seq-pool-${depth}-${trial++}`);
      const pool = newPool(dir, 2 * SEQ_BYTES);
      await pool.createThin(1, SEQ_BYTES);
      const secs = await timed(async () => {
        await queue(n, depth, (i) => pool.write(1, i * CHUNK, buf));
        await pool.flush();
      });
      if (pool.status().usedDataBlocks !== n) throw new Error(`seq write: expected ${n} provisioned blocks, got ${pool.status().usedDataBlocks}`);
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
      return secs;
    }, async () => {
      // Same size as the pool's data file, also sparse.
      const file = path.join(root, `seq-base-${depth}-${trial}`);
      sparseFile(file, 2 * SEQ_BYTES);
      const fh = await fsp.open(file, 'r+');
      const secs = await timed(async () => {
        await queue(n, depth, (i) => fh.write(buf, 0, CHUNK, i * CHUNK));
        await fh.datasync();
      });
      await fh.close();
      fs.rmSync(file);
      return secs;
    });
    const o = n / Math.min(...ours);
    const b = n / Math.min(...base);
    raw[`qd${depth}`] = { oursSeconds: ours.map(sig4), baselineSeconds: base.map(sig4), oursMiBps: mibps(SEQ_BYTES, Math.min(...ours)), baselineMiBps: mibps(SEQ_BYTES, Math.min(...base)) };
    rows.push(row(
      `seq 64 KiB writes provisioning ${SEQ_BYTES / MiB} MiB, QD${depth}, + flush`,
      'pool.write + flush', 'fs.promises write to sparse file + fdatasync', o, b, 0.7,
      `best of ${WRITE_TRIALS}; ${mibps(SEQ_BYTES, Math.min(...ours))} vs ${mibps(SEQ_BYTES, Math.min(...base))} MiB/s`,
    ));
  }
  details.seqWrite = { bytes: SEQ_BYTES, request: CHUNK, ...raw };
  return rows;
}

// ------------------------------------------------------------------ 3. sequential read, warm

export async function seqRead(m: Mapped): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  const fh = await fsp.open(m.file, 'r');
  try {
    // Warm both sides (page cache and metadata cache) and check they hold the same bytes.
    for (let off = 0; off < SEQ_BYTES; off += MiB) {
      const a = await m.pool.read(m.dev, off, MiB);
      const b = Buffer.allocUnsafe(MiB);
      await fh.read(b, 0, MiB, off);
      if (!a.equals(b)) throw new Error(`seq read: pool and file differ at ${off}`);
    }
    for (const [req, depth] of [[64 * KiB, 1], [MiB, 1], [64 * KiB, 8]]) {
      const n = SEQ_BYTES / req;
      const per = READ_SEGMENT / req;
      const r = await interleaved(
        READ_PASSES,
        SEQ_BYTES / READ_SEGMENT,
        (s) => queue(per, depth, (i) => m.pool.read(m.dev, (s * per + i) * req, req)),
        (s) => queue(per, depth, async (i) => {
          // A fresh buffer per request, as the pool returns one (uninitialised: the cheapest).
          const b = Buffer.allocUnsafe(req);
          const { bytesRead } = await fh.read(b, 0, req, (s * per + i) * req);
          if (bytesRead !== req) throw new Error('short read');
        }),
      );
      const label = `${req / KiB} KiB QD${depth}`;
      raw[label] = {
        oursSeconds: r.oursAll.map(sig4), baselineSeconds: r.baseAll.map(sig4), passRatios: r.ratios.map(sig4),
        oursMiBps: mibps(SEQ_BYTES, r.ours), baselineMiBps: mibps(SEQ_BYTES, r.base),
      };
      rows.push(row(
        `seq read ${SEQ_BYTES / MiB} MiB fully mapped, ${label}, warm`,
        'pool.read', 'fs.promises read of file', n / r.ours, n / r.base, 0.8,
        `both warm in page cache; best per segment over ${READ_PASSES} interleaved passes (pass ratios ${sig4(Math.min(...r.ratios))}-${sig4(Math.max(...r.ratios))}); ${mibps(SEQ_BYTES, r.ours)} vs ${mibps(SEQ_BYTES, r.base)} MiB/s`,
      ));
    }
  } finally {
    await fh.close();
  }
  details.seqRead = { bytes: SEQ_BYTES, cache: 'warm (read once before timing; nothing dropped)', ...raw };
  return rows;
}
