/**
 * NBD benchmarks: fio's nbd engine over a unix socket against four servers in one run,
 *  - thinsim (`thinsim serve`, a thin device of a loop-lvm pool);
 *  - `nbdkit null` (the protocol floor: no storage at all);
 *  - `nbdkit file` on a sparse file (a plain file server);
 *  - `qemu-nbd` serving a qcow2 with 64 KiB clusters (the copy-on-write peer),
 * on three workloads:
 *  - 64 KiB sequential writes to a fresh device (thinsim: a new thin device; qcow2: a new
 *    image; file: a new sparse file);
 *  - 4 KiB random writes to a snapshot or overlay, one per 64 KiB chunk, so every write
 *    breaks sharing (thinsim: a new snapshot of a written origin; qcow2: a new overlay on a
 *    written raw backing file; file and null have nothing to share);
 *  - 4 KiB random reads of a fully written device,
 * at queue depths 1 and 16. The servers are interleaved (A B C D A B C D ...) and each
 * row reports the median with min and max.
 *
 * Warm-up: every device is twice the measured size. Each measurement starts a fresh
 * server, runs the same workload for WARMUP_SECONDS on the upper half (caches, the
 * allocator, and for thinsim V8's optimising compiler, which takes the first second or
 * so of a new Node process), then measures on the lower half, which is still fresh
 * (unwritten, or shared with the origin). Every server gets the same warm-up; the
 * warm-up's own IOPS are kept in the JSON as the cold-start figure. Targets (NBD issue): thinsim >= 1.0x qemu-nbd
 * on every workload and depth; >= 0.8x nbdkit file on sequential writes; the distance
 * from nbdkit null is reported. A server whose tool is missing is skipped, and said so.
 * THINSIM_NBD_BENCH_REPEATS (default 3) sets the rounds.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RESULTS_DIR, type BenchRow, type BenchSuite } from './bench-suite';

const SUITE = 'nbd';
const MiB = 2 ** 20;
const CHUNK = 64 * 1024;
/** The measured region; each device is twice this (the upper half is for the warm-up). */
const SIZE = 256 * MiB;
const DEVICE = 2 * SIZE;
const WARMUP_SECONDS = Number(process.env.THINSIM_NBD_BENCH_WARMUP ?? 1);
const BIN = path.resolve(__dirname, '../../bin/thinsim.js');
const REPEATS = Number(process.env.THINSIM_NBD_BENCH_REPEATS ?? 3);
const DEPTHS = [1, 16];

type Workload = 'seqwrite' | 'cow' | 'randread';
type ServerName = 'thinsim' | 'nbdkit-null' | 'nbdkit-file' | 'qemu-nbd';

interface Server {
  name: ServerName;
  /** Prepare fresh state for one measurement; returns the command that serves it, and the export name. */
  prepare(w: Workload, run: number): { argv: string[]; exportName: string };
}

interface Sample { iops: number; mibps: number; p50us: number; p99us: number; coldIops: number }

const have = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

const thinsim = (...args: string[]): string => sh(process.execPath, [BIN, ...args]);

/** A raw file of `DEVICE` bytes of non-zero data (what the origin / backing holds). */
function writtenRaw(file: string): void {
  const buf = Buffer.alloc(MiB);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 131 + 7) & 0xff;
  const fd = fs.openSync(file, 'w');
  try {
    for (let o = 0; o < DEVICE; o += MiB) fs.writeSync(fd, buf, 0, MiB, o);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function servers(root: string): { list: Server[]; skipped: string[] } {
  const list: Server[] = [];
  const skipped: string[] = [];
  const raw = path.join(root, 'written.raw');
  writtenRaw(raw);

  // thinsim: one pool; device 1 holds the written origin (imported once).
  const poolDir = path.join(root, 'pool');
  thinsim('pool', 'create', poolDir, '--data-size', `${4 * DEVICE}`, '--metadata-size', '64M');
  thinsim('thin', 'create', poolDir, '1', '--size', `${DEVICE}`);
  thinsim('thin', 'import', poolDir, '1', raw);
  let nextId = 100;
  let previous: number | undefined;
  list.push({
    name: 'thinsim',
    prepare(w) {
      let id = 1;
      if (w !== 'randread') {
        // The previous run's device goes first, so the pool never fills up.
        if (previous !== undefined) thinsim('thin', 'delete', poolDir, `${previous}`);
        id = previous = nextId++;
        if (w === 'seqwrite') thinsim('thin', 'create', poolDir, `${id}`, '--size', `${DEVICE}`);
        else thinsim('thin', 'snap', poolDir, `${id}`, '1');
      }
      return { argv: [process.execPath, BIN, 'serve', poolDir, '--socket', '{sock}'], exportName: `${id}` };
    },
  });

  if (have('nbdkit')) {
    list.push({ name: 'nbdkit-null', prepare: () => ({ argv: ['nbdkit', '-f', '-U', '{sock}', 'null', `size=${DEVICE}`], exportName: '' }) });
    list.push({
      name: 'nbdkit-file',
      prepare(w, run) {
        let file = raw;
        if (w === 'seqwrite') {
          file = path.join(root, `fresh-${run}.img`);
          fs.writeFileSync(file, '');
          fs.truncateSync(file, DEVICE);
        } else if (w === 'cow') {
          // Nothing to share: plain overwrites of a written file.
          file = path.join(root, `copy-${run}.img`);
          fs.copyFileSync(raw, file);
        }
        return { argv: ['nbdkit', '-f', '-U', '{sock}', 'file', `file=${file}`], exportName: '' };
      },
    });
  } else {
    skipped.push('nbdkit (not installed: apt-get install nbdkit)');
  }

  if (have('qemu-nbd') && have('qemu-img')) {
    const base = path.join(root, 'written.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=64k', raw, base]);
    list.push({
      name: 'qemu-nbd',
      prepare(w, run) {
        let img = base;
        if (w === 'seqwrite') {
          img = path.join(root, `fresh-${run}.qcow2`);
          sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', img, `${DEVICE}`]);
        } else if (w === 'cow') {
          img = path.join(root, `overlay-${run}.qcow2`);
          sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', '-b', raw, '-F', 'raw', img]);
        }
        return { argv: ['qemu-nbd', '-f', 'qcow2', '--cache=writeback', '--aio=threads', '--persistent', '--shared=16', '-x', '', '-k', '{sock}', img], exportName: '' };
      },
    });
  } else {
    skipped.push('qemu-nbd (not installed: apt-get install qemu-utils)');
  }
  return { list, skipped };
}

async function waitForSocket(sock: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    if (fs.existsSync(sock)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`server did not create ${sock} within 10 s`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 20000);
  await done;
  clearTimeout(t);
}

/** The fio job: measured on [0, SIZE); the warm-up runs the same job on [SIZE, 2*SIZE) for WARMUP_SECONDS. */
function fioArgs(w: Workload, depth: number, uri: string, warmup: boolean): string[] {
  const common = [
    '--name=job', '--ioengine=nbd', `--uri=${uri}`, `--iodepth=${depth}`, `--offset=${warmup ? SIZE : 0}`, `--size=${SIZE}`,
    '--output-format=json', '--randrepeat=1', '--random_generator=tausworthe64',
    ...(warmup ? ['--time_based', `--runtime=${WARMUP_SECONDS}`] : []),
  ];
  switch (w) {
    case 'seqwrite': return [...common, '--rw=write', '--bs=64k'];
    // One 4 KiB write per 64 KiB chunk, in random order (the random map forbids repeats).
    case 'cow': return [...common, '--rw=randwrite', '--bs=4k', `--ba=${CHUNK}`, `--io_size=${(SIZE / CHUNK) * 4096}`];
    case 'randread': return [...common, '--rw=randread', '--bs=4k', `--io_size=${32 * MiB}`];
  }
}

async function measure(server: Server, w: Workload, depth: number, run: number, root: string): Promise<Sample> {
  const sock = path.join(root, `${server.name}.sock`);
  fs.rmSync(sock, { force: true });
  const { argv, exportName } = server.prepare(w, run);
  const child = spawn(argv[0], argv.slice(1).map((a) => a.replace('{sock}', sock)), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  try {
    await waitForSocket(sock, child);
    const uri = `nbd+unix:///${encodeURIComponent(exportName)}?socket=${sock}`;
    const fio = (warmup: boolean) => {
      const r = spawnSync('fio', fioArgs(w, depth, uri, warmup), { encoding: 'utf8', maxBuffer: 64 * MiB });
      if (r.status !== 0) throw new Error(`fio against ${server.name} failed: ${r.stderr}\n${stderr}`);
      const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
      return w === 'randread' ? job.read : job.write;
    };
    const cold = WARMUP_SECONDS > 0 ? fio(true).iops : NaN;
    const side = fio(false);
    const pct = side.clat_ns.percentile ?? {};
    return { iops: side.iops, mibps: side.bw / 1024, p50us: (pct['50.000000'] ?? NaN) / 1000, p99us: (pct['99.000000'] ?? NaN) / 1000, coldIops: cold };
  } finally {
    await stop(child);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const sig3 = (x: number): number => Number(x.toPrecision(3));

const LABEL: Record<Workload, string> = {
  seqwrite: '64 KiB sequential write to a fresh device',
  cow: '4 KiB random write to a snapshot/overlay, every write breaks sharing',
  randread: '4 KiB random read of a written device',
};

async function run(): Promise<BenchRow[]> {
  if (!have('fio')) {
    console.log('nbd bench: skipped, fio is not installed (apt-get install fio)');
    return [];
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-nbd-bench-'));
  const rows: BenchRow[] = [];
  const raw: Record<string, unknown> = {};
  try {
    const { list, skipped } = servers(root);
    for (const s of skipped) console.log(`nbd bench: ${s} skipped`);
    let run = 0;
    for (const w of ['seqwrite', 'cow', 'randread'] as Workload[]) {
      for (const depth of DEPTHS) {
        const samples = new Map<ServerName, Sample[]>(list.map((s) => [s.name, []]));
        for (let r = 0; r < REPEATS; r++) {
          for (const s of list) samples.get(s.name)!.push(await measure(s, w, depth, run++, root));
        }
        const stats = Object.fromEntries([...samples].map(([name, xs]) => [name, {
          iopsMedian: sig3(median(xs.map((x) => x.iops))), iopsMin: sig3(Math.min(...xs.map((x) => x.iops))), iopsMax: sig3(Math.max(...xs.map((x) => x.iops))),
          mibpsMedian: sig3(median(xs.map((x) => x.mibps))), p50us: sig3(median(xs.map((x) => x.p50us))), p99us: sig3(median(xs.map((x) => x.p99us))),
          warmupIopsMedian: sig3(median(xs.map((x) => x.coldIops))),
        }]));
        raw[`${w}-qd${depth}`] = stats;
        const ours = stats.thinsim;
        const note = (peer: string) => {
          const p = (stats as any)[peer];
          return `IOPS median ${ours.iopsMedian} [${ours.iopsMin}-${ours.iopsMax}] vs ${p.iopsMedian} [${p.iopsMin}-${p.iopsMax}]; p50/p99 ${ours.p50us}/${ours.p99us} us vs ${p.p50us}/${p.p99us} us; in the ${WARMUP_SECONDS} s warm-up ${ours.warmupIopsMedian} vs ${p.warmupIopsMedian} IOPS`;
        };
        const add = (peer: ServerName, target?: number) => {
          if (!(peer in stats)) return;
          rows.push({
            suite: SUITE, case: `${LABEL[w]}, QD${depth}`, subject: 'thinsim serve', baseline: peer,
            subjectOps: ours.iopsMedian, baselineOps: (stats as any)[peer].iopsMedian,
            ratio: ours.iopsMedian / (stats as any)[peer].iopsMedian, target, note: note(peer),
          });
        };
        add('qemu-nbd', 1.0);
        add('nbdkit-file', w === 'seqwrite' ? 0.8 : undefined);
        add('nbdkit-null');
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'nbd.json'), JSON.stringify({ date: new Date().toISOString(), repeats: REPEATS, sizeBytes: SIZE, deviceBytes: DEVICE, warmupSeconds: WARMUP_SECONDS, results: raw }, null, 2) + '\n');
  return rows;
}

export const nbdSuite: BenchSuite = { name: SUITE, run };
