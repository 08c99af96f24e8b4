/**
 * containerd with thinsim as its snapshotter against containerd's own overlayfs
 * snapshotter, interleaved round by round in one run, on the Debian image
 * (debian-python-image.ts: minbase + python3 + an app layer, built and cached on first use):
 *  - import: `ctr image import --snapshotter S` into a private containerd
 *    (src/containerd/daemon.ts) started afresh for each subject and round outside the
 *    timing (empty content store and snapshots), then `sync -f` of what it wrote (the
 *    containerd root; for thinsim also the pool). thinsim runs as `thinsim snapshotter` on a
 *    fresh pool whose base device (ext4, 2G) is made before the timing, as overlayfs's
 *    empty directory is;
 *  - run: `ctr run --rm --snapshotter S IMAGE ID python3 -c ...` on the imported image;
 *    one untimed run first, then RUNS timed runs, median per round.
 * Rows are median operations per second over the rounds, thinsim / overlayfs (> 1: thinsim
 * is faster). The targets: import at most 1.5x overlayfs's time (ratio >= 0.67),
 * run at most 2x (ratio >= 0.5). THINSIM_CONTAINERD_BENCH_REPEATS (default 3) sets the rounds.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loopMissing } from '../src/containerd/attach';
import { containerdMissing, startContainerd, type PrivateContainerd } from '../src/containerd/daemon';
import { DEBIAN_PYTHON_TAG, debianPythonImage } from '../src/experiments/debian-python-image';
import { Pool } from '../src/pool/pool';
import { findTool } from '../src/tools';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';

const SUITE = 'containerd';
const MiB = 2 ** 20;
const REPEATS = Number(process.env.THINSIM_CONTAINERD_BENCH_REPEATS ?? 3);
const RUNS = 3;
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'thinsim.js');
const REF = `docker.io/${DEBIAN_PYTHON_TAG}`;
const PY = ['python3', '-c', 'import json, sys; print(json.dumps(sys.version_info[:2]))'];

type Subject = 'thinsim' | 'overlayfs';

function blocker(): string | undefined {
  const gone = ['mmdebstrap', 'umoci', 'skopeo', 'nbdfuse'].filter((t) => !findTool(t));
  if (gone.length) return `needs ${gone.join(', ')}`;
  return containerdMissing() ?? loopMissing();
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; };

/** `thinsim snapshotter` on a fresh pool (base device made first); resolves once it serves. */
async function startThinsim(dir: string): Promise<{ socket: string; pool: string; stop(): Promise<void> }> {
  const pool = path.join(dir, 'pool');
  await Pool.create(pool, { dataSize: 8192 * MiB, metadataSize: 64 * MiB }).close();
  execFileSync(process.execPath, [BIN, 'layer', 'prepare', pool, 'warm-up', '--base-size', '2G']);
  execFileSync(process.execPath, [BIN, 'layer', 'rm', pool, 'warm-up']);
  const socket = path.join(dir, 'thinsim.sock');
  const child = spawn(process.execPath, [BIN, 'snapshotter', pool, '--address', socket, '--base-image-size', '2G'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const ended = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    void ended.then((c) => reject(new Error(`thinsim snapshotter exited ${c}: ${err}`)));
  });
  return {
    socket, pool,
    stop: async () => {
      child.kill('SIGTERM');
      const code = await ended;
      if (code !== 0) throw new Error(`thinsim snapshotter exited ${code} at SIGTERM: ${err}`);
    },
  };
}

async function round(subject: Subject, image: string, tmp: string, n: number): Promise<{ import: number; run: number }> {
  const dir = fs.mkdtempSync(path.join(tmp, subject[0]));
  const thinsim = subject === 'thinsim' ? await startThinsim(dir) : undefined;
  let ctd: PrivateContainerd | undefined;
  try {
    ctd = await startContainerd({ dir, ...(thinsim ? { proxyPlugins: [{ name: 'thinsim', address: thinsim.socket }] } : {}) });
    let t0 = performance.now();
    await ctd.ctrOk(['image', 'import', '--snapshotter', subject, image], `ctr image import (${subject})`, { timeoutMs: 1_800_000 });
    execFileSync('sync', ['-f', ctd.root]);
    if (thinsim) execFileSync('sync', ['-f', thinsim.pool]);
    const importSeconds = (performance.now() - t0) / 1000;
    const runs: number[] = [];
    for (let i = 0; i <= RUNS; i++) {
      t0 = performance.now();
      const out = await ctd.ctrOk(['run', '--rm', '--runc-root', ctd.runcRoot, '--snapshotter', subject, REF, `bench-${process.pid}-${n}-${i}`, ...PY], `ctr run (${subject})`);
      if (!/^\[3, \d+\]$/.test(out.trim())) throw new Error(`python3 in the container printed ${JSON.stringify(out)}`);
      if (i > 0) runs.push((performance.now() - t0) / 1000);
    }
    return { import: importSeconds, run: median(runs) };
  } finally {
    await ctd?.stop();
    await thinsim?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const containerdSuite: BenchSuite = {
  name: SUITE,
  async run(): Promise<BenchRow[]> {
    const why = blocker();
    const seconds: Record<Subject, { import: number[]; run: number[] }> = { thinsim: { import: [], run: [] }, overlayfs: { import: [], run: [] } };
    if (!why) {
      const img = await debianPythonImage((l) => console.log(l));
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tcb-')); // short: containerd's sockets live below it
      try {
        for (let n = 0; n < REPEATS; n++) {
          const order: Subject[] = n % 2 ? ['thinsim', 'overlayfs'] : ['overlayfs', 'thinsim'];
          for (const s of order) {
            console.log(`containerd bench: round ${n + 1} of ${REPEATS}: ${s}`);
            const r = await round(s, img.file, tmp, n);
            seconds[s].import.push(r.import);
            seconds[s].run.push(r.run);
          }
        }
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    }
    const ops = (ts: number[]) => (ts.length ? 1 / median(ts) : NaN);
    const note = why ? `not measured: ${why}` : `median of ${REPEATS} interleaved rounds; load average ${os.loadavg()[0].toFixed(1)} at the end`;
    const row = (c: string, what: 'import' | 'run', target: number): BenchRow => ({
      suite: SUITE, case: c, subject: 'containerd + thinsim snapshotter', baseline: 'containerd + overlayfs snapshotter',
      subjectOps: ops(seconds.thinsim[what]), baselineOps: ops(seconds.overlayfs[what]),
      ratio: ops(seconds.thinsim[what]) / ops(seconds.overlayfs[what]), target, note,
    });
    const rows = [
      row('ctr image import of the Debian + python3 image (imports/s)', 'import', 1 / 1.5),
      row(`ctr run --rm of a python3 one-liner (runs/s, median of ${RUNS} per round)`, 'run', 1 / 2),
    ];
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    fs.writeFileSync(path.join(RESULTS_DIR, 'containerd.json'), JSON.stringify({ date: new Date().toISOString(), loadavg: os.loadavg(), rows, seconds }, null, 2) + '\n');
    return rows;
  },
};
