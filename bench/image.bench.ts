/**
 * Image import benchmark: each image (a docker save archive) imported four ways,
 * interleaved round by round in one run:
 *  - `tar -x` of each layer tar into a plain directory, then `sync -f` (the baseline:
 *    GNU tar on the host filesystem, made durable as an import is; whiteouts are not
 *    applied, they land as .wh. files);
 *  - thinsim's applyLayer of each layer onto a plain directory, then `sync -f` (our
 *    extractor alone, whiteouts and DiffIDs included);
 *  - `importImage(store, archive)` (the public API only) into a fresh layer store
 *    (snapshot per layer, ext4 mounted through NBD, apply, commit with ChainIDs); the base
 *    device's mkfs is done before timing;
 *  - containerd 1.6 with its overlayfs snapshotter: `ctr image import --snapshotter
 *    overlayfs` into a private containerd (src/containerd/daemon.ts) started afresh for
 *    each round outside the timing (an empty root every round: no blob or snapshot
 *    left from the round before), then `sync -f` of its root. ctr writes every blob to
 *    the content store and unpacks it into snapshots: what a containerd import costs.
 * The images: the generated one (one layer of 2000 small files, one of four 32 MiB files,
 * one of changes with whiteouts), and the issue's Debian image (debian-python-image.ts:
 * minbase, python3, an app layer; ~215 MB, built and cached on first use).
 * Each row is a median throughput in MiB/s of uncompressed layer tar over the rounds, as a
 * ratio to tar -x (and thinsim against containerd); its note gives the range of the ratios
 * within one round, a measure of the noise. THINSIM_IMAGE_BENCH_REPEATS (default 3)
 * sets the rounds, THINSIM_IMAGE_BENCH_IMAGES (default "generated,debian") the images.
 * A subject that cannot run here is NaN and its row says why.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { containerdMissing, startContainerd } from '../src/containerd/daemon';
import { writeDockerArchive, type GenEntry } from '../src/experiments/image-gen';
import { debianPythonImage } from '../src/experiments/debian-python-image';
import { realFilesystemBlocker } from '../src/experiments/demo';
import { applyLayer } from '../src/layers/apply';
import { importImage } from '../src/layers/image';
import { LayerStore } from '../src/layers/snapshotter';
import { Pool } from '../src/pool/pool';
import { findTool } from '../src/tools';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';

const SUITE = 'image';
const MiB = 2 ** 20;
const REPEATS = Number(process.env.THINSIM_IMAGE_BENCH_REPEATS ?? 3);
const IMAGES = (process.env.THINSIM_IMAGE_BENCH_IMAGES ?? 'generated,debian').split(',').map((s) => s.trim()).filter(Boolean);

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

type Subject = 'tar' | 'apply' | 'import' | 'containerd';
interface BenchImage { archive: string; label: string; baseSize: number }

/** Why the Debian image cannot be built here, or undefined. */
function debianBlocker(): string | undefined {
  if (process.getuid?.() !== 0) return 'the Debian image needs root (mmdebstrap, umoci keep owners)';
  const gone = ['mmdebstrap', 'umoci', 'skopeo'].filter((t) => !findTool(t));
  return gone.length ? `the Debian image needs ${gone.join(', ')} (apt-get install ${gone.join(' ')})` : undefined;
}

/** The layer tars of a docker-archive, in order, unpacked under `dir`. */
function layerTars(archive: string, dir: string): string[] {
  fs.mkdirSync(dir);
  execFileSync('tar', ['-xf', archive, '-C', dir]);
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
  return manifest[0].Layers.map((l) => path.join(dir, l));
}

async function measure(img: BenchImage, tmp: string, blockers: { import?: string; containerd?: string }): Promise<{ times: Record<Subject, number[]>; tarBytes: number }> {
  const layerFiles = layerTars(img.archive, path.join(tmp, 'archive'));
  const tarBytes = layerFiles.reduce((a, f) => a + fs.statSync(f).size, 0);
  const times: Record<Subject, number[]> = { tar: [], apply: [], import: [], containerd: [] };
  for (let round = 0; round < REPEATS; round++) {
    console.log(`image bench: ${img.label}: round ${round + 1} of ${REPEATS}`);
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

    if (!blockers.import) {
      const poolDir = path.join(tmp, `pool-${round}`);
      await Pool.create(poolDir, { dataSize: 2048 * MiB, metadataSize: 32 * MiB }).close();
      const store = await LayerStore.open(poolDir, { baseSize: img.baseSize });
      try {
        await store.prepare('warm-up'); // makes the base device and its ext4 outside the timing
        await store.remove('warm-up');
        t0 = performance.now();
        await importImage(store, img.archive);
        times.import.push((performance.now() - t0) / 1000);
      } finally {
        await store.close();
      }
      fs.rmSync(poolDir, { recursive: true });
    }

    if (!blockers.containerd) {
      const ctd = await startContainerd({ dir: tmp });
      try {
        t0 = performance.now();
        await ctd.ctrOk(['image', 'import', '--snapshotter', 'overlayfs', img.archive], 'ctr image import', { timeoutMs: 1_800_000 });
        execFileSync('sync', ['-f', ctd.root]);
        times.containerd.push((performance.now() - t0) / 1000);
      } finally {
        await ctd.stop();
      }
    }
  }
  fs.rmSync(path.join(tmp, 'archive'), { recursive: true });
  return { times, tarBytes };
}

function rowsFor(label: string, tarBytes: number, times: Record<Subject, number[]>, blockers: { import?: string; containerd?: string }): BenchRow[] {
  const mibps = (ts: number[]) => (ts.length ? tarBytes / MiB / median(ts) : NaN);
  const c = `import ${Number.isFinite(tarBytes) ? `${(tarBytes / MiB).toFixed(0)} MiB ` : ''}image (${label}), MiB/s of tar, median of ${REPEATS}`;
  /** The same-round ratios (baseline seconds / subject seconds): how far the shared machine moved the figure. */
  const spread = (sub: number[], base: number[]) => {
    const r = sub.map((t, i) => base[i] / t).filter(Number.isFinite);
    return r.length > 1 ? `per round ${Math.min(...r).toFixed(2)}-${Math.max(...r).toFixed(2)}x` : undefined;
  };
  const row = (subject: string, sub: number[], baseline: string, base: number[], blocked?: string): BenchRow => {
    const ops = mibps(sub);
    const baseOps = mibps(base);
    const note = blocked ?? spread(sub, base);
    return { suite: SUITE, case: c, subject, baseline, subjectOps: ops, baselineOps: baseOps, ratio: ops / baseOps, ...(note ? { note } : {}) };
  };
  const thinsim = 'thinsim image import (ext4 layers via NBD)';
  const ctd = 'containerd ctr image import (overlayfs snapshotter)';
  const why = (...b: (string | undefined)[]) => { const w = b.filter(Boolean).join('; '); return w ? `not measured: ${w}` : undefined; };
  return [
    row('applyLayer onto a plain dir', times.apply, 'tar -x into a plain dir', times.tar),
    row(thinsim, times.import, 'tar -x into a plain dir', times.tar, why(blockers.import)),
    row(ctd, times.containerd, 'tar -x into a plain dir', times.tar, why(blockers.containerd)),
    row(thinsim, times.import, ctd, times.containerd, why(blockers.import, blockers.containerd)),
  ];
}

export const imageSuite: BenchSuite = {
  name: SUITE,
  async run(): Promise<BenchRow[]> {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-image-bench-'));
    try {
      const blockers = { import: realFilesystemBlocker(), containerd: containerdMissing() };
      const rows: BenchRow[] = [];
      const seconds: Record<string, Record<Subject, number[]>> = {};
      for (const which of IMAGES) {
        let img: BenchImage;
        let label: string;
        if (which === 'generated') {
          const archive = path.join(tmp, 'image.tar');
          await writeDockerArchive(archive, { repoTag: 'bench/image:1', layers: layers() });
          label = '3 layers: 2000 small files, 4 x 32 MiB, whiteouts';
          img = { archive, label, baseSize: 1024 * MiB };
        } else if (which === 'debian') {
          const blocked = debianBlocker();
          if (blocked) {
            rows.push(...rowsFor('Debian minbase + python3 + app', NaN, { tar: [], apply: [], import: [], containerd: [] }, { import: blocked, containerd: blocked })
              .map((r) => ({ ...r, note: `not measured: ${blocked}` })));
            continue;
          }
          const built = await debianPythonImage((l) => console.log(l));
          label = 'Debian bookworm minbase + python3 + app, 3 layers';
          img = { archive: built.file, label, baseSize: 2048 * MiB };
        } else {
          throw new Error(`THINSIM_IMAGE_BENCH_IMAGES names "${which}": use generated, debian or both, comma-separated`);
        }
        const m = await measure(img, tmp, blockers);
        seconds[which] = m.times;
        rows.push(...rowsFor(label, m.tarBytes, m.times, blockers));
      }
      fs.mkdirSync(RESULTS_DIR, { recursive: true });
      fs.writeFileSync(path.join(RESULTS_DIR, 'image.json'), JSON.stringify({ date: new Date().toISOString(), loadavg: os.loadavg(), rows, seconds }, null, 2) + '\n');
      return rows;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
};
