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
 *
 * Cold rows (issue 19): the first 4,096 requests of a fresh process, with no warm-up by
 * the bench, at QD1, for 4 KiB sharing breaks and 4 KiB random reads: thinsim serve
 * (which warms itself up on a scratch pool before it listens), thinsim serve
 * --no-warm-up, and qemu-nbd, a fresh process and fresh state for every measurement,
 * interleaved with the order turned round every round. Each row is the median of the
 * per-round ratios with their spread; the time from spawning a server to its socket
 * appearing is reported next to it (the warm-up is paid there), and so is the server's CPU
 * time (user + system, all threads, from /proc) over the requests, which the machine's load
 * disturbs far less than their rate. Before each, the data
 * the server reads (thinsim's device 1, qemu's raw and qcow2 files) is read into the
 * page cache, so what is cold is the process, not the disk. Target: thinsim serve
 * >= 0.9x qemu-nbd. THINSIM_NBD_COLD_ROUNDS (default 7) sets the rounds;
 * THINSIM_NBD_BENCH=cold runs only the cold rows (saved in nbd-cold.json), =warm only
 * the matrix above.
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
const COLD_ROUNDS = Number(process.env.THINSIM_NBD_COLD_ROUNDS ?? 7);
const COLD_REQUESTS = 4096;
const ONLY = process.env.THINSIM_NBD_BENCH ?? 'all';

type Workload = 'seqwrite' | 'cow' | 'randread';
type ServerName = 'thinsim' | 'thinsim-no-warm-up' | 'nbdkit-null' | 'nbdkit-file' | 'qemu-nbd';

interface Server {
  name: ServerName;
  /** Prepare fresh state for one measurement; returns the command that serves it, and the export name. */
  prepare(w: Workload, run: number): { argv: string[]; exportName: string };
  /** Bring the written data this server reads into the page cache (cold rows: only the process is cold). */
  cacheInputs?(): void;
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

/** Read a file whole (into the page cache). */
function readThrough(file: string): void {
  const buf = Buffer.allocUnsafe(MiB);
  const fd = fs.openSync(file, 'r');
  try {
    while (fs.readSync(fd, buf, 0, MiB, null) > 0) { /* next MiB */ }
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
  const thinsimServer = (name: ServerName, extra: string[]): Server => ({
    name,
    prepare(w) {
      let id = 1;
      if (w !== 'randread') {
        // The previous run's device goes first, so the pool never fills up.
        if (previous !== undefined) thinsim('thin', 'delete', poolDir, `${previous}`);
        id = previous = nextId++;
        if (w === 'seqwrite') thinsim('thin', 'create', poolDir, `${id}`, '--size', `${DEVICE}`);
        else thinsim('thin', 'snap', poolDir, `${id}`, '1');
      }
      return { argv: [process.execPath, BIN, 'serve', poolDir, '--socket', '{sock}', ...extra], exportName: `${id}` };
    },
    cacheInputs: () => { thinsim('thin', 'read', poolDir, '1', '--length', `${DEVICE}`, '-o', '/dev/null'); },
  });
  list.push(thinsimServer('thinsim', []));
  list.push(thinsimServer('thinsim-no-warm-up', ['--no-warm-up']));

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
      cacheInputs: () => { readThrough(raw); readThrough(base); },
    });
  } else {
    skipped.push('qemu-nbd (not installed: apt-get install qemu-utils)');
  }
  return { list, skipped };
}

async function waitForSocket(sock: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    if (fs.existsSync(sock)) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`server did not create ${sock} within 30 s`);
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
    // 4 KiB writes at 64 KiB boundaries in random order, one per chunk on average. fio
    // turns its random map off with --ba, so some chunks are written twice (the second
    // write is an overwrite) and some never; both servers get the same offsets.
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

/** The warm matrix: every server, workload and depth; measured after WARMUP_SECONDS of the same job. */
async function warmRows(list: Server[], root: string, rows: BenchRow[]): Promise<void> {
  list = list.filter((s) => s.name !== 'thinsim-no-warm-up');
  const raw: Record<string, unknown> = {};
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
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'nbd.json'), JSON.stringify({ date: new Date().toISOString(), repeats: REPEATS, sizeBytes: SIZE, deviceBytes: DEVICE, warmupSeconds: WARMUP_SECONDS, results: raw }, null, 2) + '\n');
}

/** One cold measurement: IOPS over a fresh server's first COLD_REQUESTS requests, and how long it took to listen. */
interface ColdSample { iops: number; readyMs: number; p50us: number; p99us: number; cpuMs: number }

/** CPU time (user + system, every thread) a process has used so far, in ms; NaN where /proc cannot tell. */
function cpuMs(pid: number | undefined): number {
  try {
    // Fields after the command name, which is in parentheses and may hold spaces.
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return NaN; // not Linux, or the process is gone: the figure is left out, the row stays
  }
}
/** USER_HZ: 100 on every Linux port that matters here (getconf CLK_TCK). */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The cold job: COLD_REQUESTS requests at QD1 over the whole device, nothing before them. */
function coldFioArgs(w: 'cow' | 'randread', uri: string): string[] {
  const common = [
    '--name=cold', '--ioengine=nbd', `--uri=${uri}`, '--iodepth=1', `--size=${DEVICE}`, `--number_ios=${COLD_REQUESTS}`,
    '--output-format=json', '--randrepeat=1', '--random_generator=tausworthe64',
  ];
  // Sharing breaks: 4 KiB at 64 KiB boundaries of the 8,192 chunks; with fio's random map
  // off (--ba), about 79 % of the 4,096 writes land on a chunk not written before.
  return w === 'cow' ? [...common, '--rw=randwrite', '--bs=4k', `--ba=${CHUNK}`] : [...common, '--rw=randread', '--bs=4k'];
}

async function measureCold(server: Server, w: 'cow' | 'randread', run: number, root: string): Promise<ColdSample> {
  const sock = path.join(root, `${server.name}.sock`);
  fs.rmSync(sock, { force: true });
  const { argv, exportName } = server.prepare(w, run);
  server.cacheInputs?.();
  const started = performance.now();
  const child = spawn(argv[0], argv.slice(1).map((a) => a.replace('{sock}', sock)), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  try {
    await waitForSocket(sock, child);
    const readyMs = performance.now() - started;
    const uri = `nbd+unix:///${encodeURIComponent(exportName)}?socket=${sock}`;
    const cpu0 = cpuMs(child.pid);
    const r = spawnSync('fio', coldFioArgs(w, uri), { encoding: 'utf8', maxBuffer: 64 * MiB });
    const cpu = cpuMs(child.pid) - cpu0;
    if (r.status !== 0) throw new Error(`fio against ${server.name} failed: ${r.stderr}\n${stderr}`);
    const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
    const side = w === 'randread' ? job.read : job.write;
    if (side.total_ios !== COLD_REQUESTS) throw new Error(`fio against ${server.name} ran ${side.total_ios} requests, not ${COLD_REQUESTS}`);
    const pct = side.clat_ns.percentile ?? {};
    return { iops: side.iops, readyMs, p50us: (pct['50.000000'] ?? NaN) / 1000, p99us: (pct['99.000000'] ?? NaN) / 1000, cpuMs: cpu };
  } finally {
    await stop(child);
  }
}

/** The cold rows (see the header): thinsim serve, with and without its warm-up, against qemu-nbd. */
async function coldRows(all: Server[], root: string, rows: BenchRow[]): Promise<void> {
  const peer = all.find((s) => s.name === 'qemu-nbd');
  if (!peer) {
    console.log('nbd bench: cold rows skipped, they compare with qemu-nbd (apt-get install qemu-utils)');
    return;
  }
  const subjects = all.filter((s) => s.name === 'thinsim' || s.name === 'thinsim-no-warm-up');
  const raw: Record<string, unknown> = {};
  let run = 10_000;
  for (const w of ['cow', 'randread'] as const) {
    const samples = new Map<ServerName, ColdSample[]>([...subjects, peer].map((s) => [s.name, []]));
    for (let r = 0; r < COLD_ROUNDS; r++) {
      // Interleaved, the order turned round every round (a server is never always first).
      const order = r % 2 === 0 ? [...subjects, peer] : [...subjects, peer].reverse();
      for (const s of order) samples.get(s.name)!.push(await measureCold(s, w, run++, root));
    }
    const base = samples.get('qemu-nbd')!;
    const stats = Object.fromEntries([...samples].map(([name, xs]) => {
      const ratios = xs.map((x, i) => x.iops / base[i].iops);
      return [name, {
        iops: xs.map((x) => sig3(x.iops)), readyMs: xs.map((x) => Math.round(x.readyMs)), ratioToQemu: ratios.map(sig3),
        ratioMedian: sig3(median(ratios)), ratioMin: sig3(Math.min(...ratios)), ratioMax: sig3(Math.max(...ratios)),
        iopsMedian: sig3(median(xs.map((x) => x.iops))), readyMsMedian: Math.round(median(xs.map((x) => x.readyMs))),
        p50us: sig3(median(xs.map((x) => x.p50us))), p99us: sig3(median(xs.map((x) => x.p99us))),
        serverCpuMs: xs.map((x) => Math.round(x.cpuMs)), serverCpuMsMedian: Math.round(median(xs.map((x) => x.cpuMs))),
      }];
    }));
    raw[w] = stats;
    const q = stats['qemu-nbd'];
    for (const s of subjects) {
      const t = stats[s.name];
      rows.push({
        suite: SUITE, case: `cold: first ${COLD_REQUESTS} requests of a fresh server, ${LABEL[w]}, QD1`,
        subject: s.name === 'thinsim' ? 'thinsim serve' : 'thinsim serve --no-warm-up', baseline: 'qemu-nbd',
        subjectOps: t.iopsMedian, baselineOps: q.iopsMedian, ratio: t.ratioMedian, target: s.name === 'thinsim' ? 0.9 : undefined,
        note: `median of ${COLD_ROUNDS} paired rounds, spread ${t.ratioMin}-${t.ratioMax}x; p50/p99 ${t.p50us}/${t.p99us} us vs ${q.p50us}/${q.p99us} us; ` +
          `spawn to listening ${t.readyMsMedian} ms vs ${q.readyMsMedian} ms; ` +
          `server CPU over the ${COLD_REQUESTS} requests ${t.serverCpuMsMedian} ms vs ${q.serverCpuMsMedian} ms`,
      });
    }
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'nbd-cold.json'), JSON.stringify({
    date: new Date().toISOString(), rounds: COLD_ROUNDS, requests: COLD_REQUESTS, deviceBytes: DEVICE,
    loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))), cpus: os.cpus().length, results: raw,
  }, null, 2) + '\n');
}

async function run(): Promise<BenchRow[]> {
  if (!have('fio')) {
    console.log('nbd bench: skipped, fio is not installed (apt-get install fio)');
    return [];
  }
  if (!['all', 'warm', 'cold'].includes(ONLY)) throw new Error(`THINSIM_NBD_BENCH=${ONLY}: use all, warm or cold`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-nbd-bench-'));
  const rows: BenchRow[] = [];
  try {
    const { list, skipped } = servers(root);
    for (const s of skipped) console.log(`nbd bench: ${s} skipped`);
    if (ONLY !== 'cold') await warmRows(list, root, rows);
    if (ONLY !== 'warm') await coldRows(list, root, rows);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  return rows;
}

export const nbdSuite: BenchSuite = { name: SUITE, run };
