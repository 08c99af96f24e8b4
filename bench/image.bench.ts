/**
 * Image import benchmark: the same generated image (a docker save archive: one layer of
 * 2000 small files, one of four 32 MiB files, one of changes with whiteouts) three ways,
 * interleaved in one run:
 *  - `tar -x` of each layer tar into a plain directory, then `sync -f` (the baseline:
 *    GNU tar on the host filesystem, made durable as an import is);
 *  - thinsim's applyLayer of each layer onto a plain directory, then `sync -f` (our
 *    extractor alone, whiteouts and DiffIDs included);
 *  - `importImage` into a fresh layer store (snapshot per layer, ext4 mounted through
 *    NBD, apply, commit with ChainIDs); the base device's mkfs is done before timing.
 * Each row is the median throughput in MiB/s of uncompressed tar over the rounds, as a
 * ratio to tar -x. THINSIM_IMAGE_BENCH_REPEATS (default 3) sets the rounds. Without the
 * tools to mount layers, the import row is NaN and says why.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeDockerArchive, type GenEntry } from '../src/experiments/image-gen';
import { realFilesystemBlocker } from '../src/experiments/demo';
import { applyLayer } from '../src/layers/apply';
import { importImage } from '../src/layers/image';
import { LayerStore } from '../src/layers/snapshotter';
import { Pool } from '../src/pool/pool';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';

const SUITE = 'image';
const MiB = 2 ** 20;
const REPEATS = Number(process.env.THINSIM_IMAGE_BENCH_REPEATS ?? 3);

function layers(): GenEntry[][] {
  const small: GenEntry[] = [];
  for (let d = 0; d < 20; d++) {
    small.push({ path: `lib/d${d}`, type: 'dir' });
    for (let f = 0; f < 100; f++) small.push({ path: `lib/d${d}/f${f}`, type: 'file', content: { size: 4096 * (1 + ((d * 100 + f) % 16)), seed: d * 100 + f + 1 } });
  }
  const big: GenEntry[] = [{ path: 'data', type: 'dir' }];
  for (let f = 0; f < 4; f++) big.push({ path: `data/blob${f}`, type: 'file', content: { size: 32 * MiB, seed: 9000 + f } });
  const changes: GenEntry[] = [{ path: 'lib/d0', type: 'opaque' }, { path: 'lib/d0/new', type: 'file', content: 'new\n' }, { path: 'data/blob0', type: 'whiteout' }];
  for (let d = 1; d < 20; d++) changes.push({ path: `lib/d${d}/f0`, type: 'whiteout' }, { path: `lib/d${d}/f1`, type: 'file', content: { size: 8192, seed: 5 } });
  return [[{ path: 'lib', type: 'dir' }, ...small], big, changes];
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

export const imageSuite: BenchSuite = {
  name: SUITE,
  async run(): Promise<BenchRow[]> {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-image-bench-'));
    try {
      const archive = path.join(tmp, 'image.tar');
      const gen = await writeDockerArchive(archive, { repoTag: 'bench/image:1', layers: layers() });
      const tarBytes = gen.tarBytes.reduce((a, b) => a + b, 0);
      const unpacked = path.join(tmp, 'archive');
      fs.mkdirSync(unpacked);
      execFileSync('tar', ['-xf', archive, '-C', unpacked]);
      const layerFiles = gen.diffIds.map((d) => path.join(unpacked, d.slice(7), 'layer.tar'));
      const blocker = realFilesystemBlocker();
      const times: Record<'tar' | 'apply' | 'import', number[]> = { tar: [], apply: [], import: [] };
      for (let round = 0; round < REPEATS; round++) {
        const dir = fs.mkdtempSync(path.join(tmp, 'tar-'));
        let t0 = performance.now();
        for (const f of layerFiles) execFileSync('tar', ['-xf', f, '-C', dir]);
        execFileSync('sync', ['-f', dir]);
        times.tar.push((performance.now() - t0) / 1000);
        fs.rmSync(dir, { recursive: true });

        const dir2 = fs.mkdtempSync(path.join(tmp, 'apply-'));
        t0 = performance.now();
        for (const f of layerFiles) await applyLayer({ file: f }, dir2);
        execFileSync('sync', ['-f', dir2]);
        times.apply.push((performance.now() - t0) / 1000);
        fs.rmSync(dir2, { recursive: true });

        if (!blocker) {
          const poolDir = path.join(tmp, `pool-${round}`);
          await Pool.create(poolDir, { dataSize: 2048 * MiB, metadataSize: 32 * MiB }).close();
          const store = await LayerStore.open(poolDir, { baseSize: 1024 * MiB });
          try {
            await store.prepare('warm-up'); // makes the base device and its ext4 outside the timing
            await store.remove('warm-up');
            t0 = performance.now();
            await importImage(store, archive);
            times.import.push((performance.now() - t0) / 1000);
          } finally {
            await store.close();
          }
          fs.rmSync(poolDir, { recursive: true });
        }
      }
      const mibps = (ts: number[]) => (ts.length ? tarBytes / MiB / median(ts) : NaN);
      const base = mibps(times.tar);
      const c = `import ${(tarBytes / MiB).toFixed(0)} MiB image (3 layers: 2000 small files, 4 x 32 MiB, whiteouts), MiB/s of tar, median of ${REPEATS}`;
      const rows: BenchRow[] = [
        { suite: SUITE, case: c, subject: 'applyLayer onto a plain dir', baseline: 'tar -x into a plain dir', subjectOps: mibps(times.apply), baselineOps: base, ratio: mibps(times.apply) / base },
        {
          suite: SUITE, case: c, subject: 'thinsim image import (ext4 layers via NBD)', baseline: 'tar -x into a plain dir', subjectOps: mibps(times.import), baselineOps: base, ratio: mibps(times.import) / base,
          ...(blocker ? { note: `import not measured: ${blocker}` } : {}),
        },
      ];
      fs.mkdirSync(RESULTS_DIR, { recursive: true });
      fs.writeFileSync(path.join(RESULTS_DIR, 'image.json'), JSON.stringify({ rows, seconds: times }, null, 2) + '\n');
      return rows;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
};
