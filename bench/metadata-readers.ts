/**
 * Metadata suite, report rows without a target: `thinsim ls` and `thinsim dump` (the CLI, a
 * process each, as the tools are) against thin_ls and thin_dump (thin-provisioning-tools
 * 0.9.0 and 1.x) on one pool with sharing (device 0: N sequential mappings; a snapshot of it
 * with every 7th block rewritten; then N/3 more scattered mappings on device 0), best of
 * ROUNDS, each output captured whole. Our output is compared with thin_ls / thin_dump 0.9.0's,
 * byte for byte, and the note says whether it matched. Part of metadata.bench.ts.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileDevice } from '../src/io/file-device';
import { ThinMetadata } from '../src/thin/metadata';
import type { BenchRow } from './bench-suite';
import { DATA_BLOCK_SIZE, N, ROUNDS, SUITE, best, count, fmtPair, sparseFile, stopwatch, type Baseline, type Timing } from './metadata-common';

/** The pool the reader rows read: sharing between two devices, runs and single mappings. */
function sharedPool(file: string): number {
  sparseFile(file);
  const md = ThinMetadata.format(new FileDevice(file), { dataBlockSize: DATA_BLOCK_SIZE, nrDataBlocks: 2 * N });
  md.createThin(0);
  for (let v = 0; v < N; v++) md.insertMapping(0, v, md.allocateDataBlock());
  md.commit();
  md.createSnap(1, 0);
  for (let v = 0; v < N; v += 7) md.insertMapping(1, v, md.allocateDataBlock());
  md.commit();
  let mappings = 2 * N;
  for (let v = 0; v < N; v += 3, mappings++) md.insertMapping(0, N + 2 * v + 5, md.allocateDataBlock());
  md.commit();
  md.close();
  return mappings;
}

/** Time a child process run (output captured whole, as a caller would); throw if it failed. */
function timed(run: () => { status: number | null; stdout: string; stderr: string }, what: string): { time: Timing; stdout: string } {
  const stop = stopwatch(true);
  const r = run();
  const time = stop();
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr.trim()}`);
  return { time, stdout: r.stdout };
}

export function readersBench(dir: string, bases: Baseline[], rows: BenchRow[]): Record<string, unknown> {
  const file = path.join(dir, 'shared-pool.bin');
  const mappings = sharedPool(file);
  const cli = path.join(__dirname, '..', '..', 'bin', 'thinsim.js');
  const out: Record<string, unknown> = { mappings };
  const t09 = bases[0].tools;
  for (const verb of ['ls', 'dump'] as const) {
    const ours: Timing[] = [];
    const theirs: Timing[][] = bases.map(() => []);
    let same: boolean | undefined;
    for (let r = 0; r < ROUNDS; r++) {
      const o = timed(() => spawnSync(process.execPath, [cli, verb, file], { encoding: 'utf8', maxBuffer: 1 << 30 }), `thinsim ${verb}`);
      ours.push(o.time);
      bases.forEach((b, i) => {
        if (!b.tools) return;
        const tools = b.tools;
        const t = timed(() => tools.run(`thin_${verb}`, [file]), `thin_${verb} ${tools.version}`);
        theirs[i].push(t.time);
        if (r === 0 && tools === t09) same = t.stdout === o.stdout;
      });
    }
    const best0 = best(ours);
    out[verb] = { thinsim: ours, baselines: bases.map((b, i) => ({ baseline: b.label, rounds: theirs[i] })), sameAs09: same };
    bases.forEach((b, i) => {
      const tb = best(theirs[i]);
      rows.push({
        suite: SUITE,
        case: `${verb} of a pool with ${count(mappings)} mappings and a snapshot`,
        subject: `thinsim ${verb} (CLI)`,
        baseline: b.label.replace('thin_restore', `thin_${verb}`),
        subjectOps: mappings / best0.wall,
        baselineOps: mappings / tb.wall,
        ratio: tb.wall / best0.wall,
        note: b.tools
          ? `${fmtPair(best0, tb)}; process start included; output ${same === undefined ? 'not compared' : same ? 'byte-identical to 0.9.0' : 'DIFFERS from 0.9.0'}`
          : `not run: ${b.skip}`,
      });
    });
  }
  fs.rmSync(file, { force: true });
  return out;
}
