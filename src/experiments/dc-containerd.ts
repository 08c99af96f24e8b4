/**
 * driver-compare through the real runtime (`thinsim experiment driver-compare --via
 * containerd`): the seed's comparison run through containerd 1.6 and runc, with thinsim as
 * containerd's proxy snapshotter (devicemapper-style: a thin snapshot with ext4 per layer
 * and per container) against containerd's own overlayfs snapshotter, on one image.
 *
 * Per trial (one snapshotter, one repeat): a fresh private containerd (daemon.ts), for
 * thinsim a fresh loop-lvm pool whose base device is made first and `thinsim snapshotter`
 * serving it; `ctr image import`; N containers started with `ctr run -d` (sleep); every
 * container reads the same files (`ctr task exec`, page cache); container 1 writes 4 KiB
 * into the big file with fsync (`dd conv=notrunc,fsync` in the container); every container
 * appends to a few files. Host figures: du -x (bytes, inodes) of what the snapshotter
 * stores (the pool directory; containerd's overlayfs snapshotter directory), fincore of
 * the files as the host sees them under each container's rootfs mount, /proc/meminfo.
 *
 * Contract: every program runs asynchronously; the daemon, the snapshotter process and the
 * containers are stopped also when a trial fails. Times taken through `ctr` include ctr's
 * own start (tens of ms), on both sides alike.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ThinError } from '../errors';
import { loopMissing } from '../containerd/attach';
import { containerdMissing, startContainerd, type PrivateContainerd } from '../containerd/daemon';
import { LayerStore } from '../layers/snapshotter';
import { Pool } from '../pool/pool';
import { runTool, runToolOk } from '../tools';
import { BIG_FILE, debianImage, FEW_FILES, MED_SIZE, type BuiltImage } from './dc-image';
import { dcParams, type DcParams } from './driver-compare';
import { Experiment, ExperimentContext, GiB, KiB, MiB, requireSizeInMiB } from './experiment';
import * as host from './host';
import type { Row } from './report/model';
import { interleave, summarize } from './runner';

const SNAPSHOTTERS = ['thinsim', 'overlayfs'] as const;
type Snapshotter = typeof SNAPSHOTTERS[number];
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'thinsim.js');

interface Usage { bytes: number; inodes: number }
interface Trial {
  empty: Usage; imported: Usage; importSeconds: number; startMs: number[]; containers: Usage;
  cache: { filesBytes: number; meminfoDelta: number };
  firstWrite: { ms: number; secondMs: number; hostBytes: number }; afterFirstWrite: Usage; afterFew: Usage;
}

async function du(p: string): Promise<Usage> {
  const b = await runToolOk('du', ['-x', '-s', '-B1', p], 'du');
  const i = await runToolOk('du', ['-x', '-s', '--inodes', p], 'du --inodes');
  return { bytes: Number(b.split(/\s/)[0]), inodes: Number(i.split(/\s/)[0]) };
}

async function fincore(p: string): Promise<number> {
  const r = await runTool('fincore', ['--json', '--bytes', p]);
  if (r.status !== 0) throw new ThinError('E_IO', `fincore ${p}: ${r.stderr.trim()}`);
  return Number((JSON.parse(r.stdout) as { fincore: { res: number | string }[] }).fincore[0].res);
}

/** `thinsim snapshotter` on a fresh pool (base device made and formatted first, as Docker's daemon does at start). */
async function startThinsim(poolDir: string, socket: string, baseSize: number): Promise<{ stop(): Promise<void> }> {
  await Pool.create(poolDir, { lowWaterMark: 0 }).close();
  const store = await LayerStore.open(poolDir, { filesystem: 'ext4', baseSize });
  try {
    await store.prepare('base-warmup');
    await store.remove('base-warmup');
  } finally {
    await store.close();
  }
  const child = spawn(process.execPath, [BIN, 'snapshotter', poolDir, '--address', socket, '--base-image-size', String(baseSize)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const ended = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    void ended.then((c) => reject(new ThinError('E_IO', `thinsim snapshotter exited ${c} before serving: ${err.trim()}`)));
  });
  return {
    stop: async () => {
      child.kill('SIGTERM');
      const code = await ended;
      if (code !== 0) throw new ThinError('E_IO', `thinsim snapshotter exited ${code} at SIGTERM: ${err.trim().slice(-2000)}`);
    },
  };
}

async function trial(s: Snapshotter, ctx: ExperimentContext, img: BuiltImage, p: DcParams, rep: number): Promise<Trial> {
  const dir = host.mkTemp(ctx.workDir, `${s}-`);
  const short = fs.mkdtempSync(path.join(os.tmpdir(), 'tdc-')); // containerd's sockets need a short path
  const socket = path.join(short, 'thinsim.sock');
  const poolDir = path.join(dir, 'pool');
  const thinsim = s === 'thinsim' ? await startThinsim(poolDir, socket, p.baseSize) : undefined;
  let ctd: PrivateContainerd | undefined;
  try {
    ctd = await startContainerd({ dir: short, ...(thinsim ? { proxyPlugins: [{ name: 'thinsim', address: socket }] } : {}) });
    const c = ctd;
    const store = thinsim ? poolDir : path.join(c.root, 'io.containerd.snapshotter.v1.overlayfs');
    fs.mkdirSync(store, { recursive: true });
    const ids = Array.from({ length: p.containers }, (_, i) => `dc-${process.pid}-${rep}-${i}`);
    const rootfs = (id: string) => path.join(c.state, 'io.containerd.runtime.v2.task', 'default', id, 'rootfs');
    const sync = async () => {
      await runToolOk('sync', ['-f', store], 'sync -f');
      for (const id of ids) if (fs.existsSync(rootfs(id))) await runToolOk('sync', ['-f', rootfs(id)], 'sync -f');
    };
    const usage = async () => { await sync(); return du(store); };
    const exec = (id: string, n: string, cmd: string) => c.ctrOk(['task', 'exec', '--exec-id', n, id, 'sh', '-c', cmd], `ctr task exec ${cmd}`);

    const empty = await usage();
    let t0 = performance.now();
    await c.ctrOk(['image', 'import', '--snapshotter', s, img.file], `ctr image import (${s})`, { timeoutMs: 1_800_000 });
    await sync();
    const importSeconds = (performance.now() - t0) / 1000;
    const ref = (await c.ctrOk(['images', 'ls', '-q'], 'ctr images ls')).trim().split('\n')[0];
    const imported = await usage();
    const startMs: number[] = [];
    for (const id of ids) {
      t0 = performance.now();
      await c.ctrOk(['run', '-d', '--runc-root', c.runcRoot, '--snapshotter', s, ref, id, 'sleep', '100000'], `ctr run -d (${s})`);
      startMs.push(performance.now() - t0);
    }
    const containers = await usage();

    // Page cache: drop the files' pages (each container's view; for thinsim also the pool's data file), then every container reads them.
    await sync();
    const views = ids.flatMap((id) => p.readSet.map((rel) => path.join(rootfs(id), rel)));
    for (const f of [...views, ...(thinsim ? [path.join(poolDir, 'data')] : [])]) await runToolOk('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none'], `drop the cached pages of ${f}`);
    const mem0 = host.meminfo().cached;
    for (const id of ids) await exec(id, 'read', p.readSet.map((r) => `cat /${r} > /dev/null`).join('; '));
    const mem1 = host.meminfo().cached;
    // overlayfs: every container's view is the one lower file, so it is counted once.
    let filesBytes = 0;
    for (const f of thinsim ? views : p.readSet.map((rel) => path.join(rootfs(ids[0]), rel))) filesBytes += await fincore(f);

    // Container 1's first small write into the big file, then the same again.
    const before = await usage();
    const dd = `dd if=/dev/urandom of=/${BIG_FILE} bs=${p.writeBytes} count=1 seek=${p.writeOffset / p.writeBytes} conv=notrunc,fsync status=none`;
    t0 = performance.now();
    await exec(ids[0], 'w1', dd);
    const ms = performance.now() - t0;
    t0 = performance.now();
    await exec(ids[0], 'w2', dd);
    const secondMs = performance.now() - t0;
    const afterFirstWrite = await usage();

    const line = 'x'.repeat(p.appendBytes - 1);
    for (const id of ids) await exec(id, 'few', `${FEW_FILES.map((f) => `echo ${line} >> /${f}`).join('; ')}; sync`);
    const afterFew = await usage();
    return {
      empty, imported, importSeconds, startMs, containers, cache: { filesBytes, meminfoDelta: mem1 - mem0 },
      firstWrite: { ms, secondMs, hostBytes: afterFirstWrite.bytes - before.bytes }, afterFirstWrite, afterFew,
    };
  } finally {
    try {
      await ctd?.stop(); // kills the containers, unmounts their rootfs
    } finally {
      await thinsim?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(short, { recursive: true, force: true });
    }
  }
}

export const driverCompareContainerd: Experiment = {
  name: 'driver-compare-containerd',
  title: 'devicemapper-style (thinsim snapshotter) vs overlayfs, through containerd and runc',
  question: 'Through one real containerd and runc, how do thinsim\'s snapshotter (a thin snapshot with ext4 per layer and per container, as containerd\'s devmapper snapshotter makes them) and containerd\'s overlayfs snapshotter compare on one image: import time, container start, host space and inodes, a container\'s first small write into a big file, N containers changing a few files, and page cache when N containers read the same files?',
  sizeMeans: 'the big file in the image that containers read and write into',
  defaults: { size: 64 * MiB, repeat: 2 },
  quick: { size: 8 * MiB, repeat: 1 },
  tools: ['containerd', 'ctr', 'runc', 'mmdebstrap', 'umoci', 'skopeo', 'nbdfuse', 'mkfs.ext4', 'fincore', 'du'],
  async run(ctx) {
    requireSizeInMiB(ctx.size, 2);
    const p = dcParams(ctx);
    const blocked = containerdMissing() ?? loopMissing() ?? ['mmdebstrap', 'umoci', 'skopeo', 'fincore'].map((t) => host.toolMissing(t, t)).find(Boolean);
    const snaps: Snapshotter[] = [];
    if (blocked) for (const s of SNAPSHOTTERS) ctx.skip(s, blocked); else snaps.push(...SNAPSHOTTERS);
    // Containers run a shell and sleep: the Debian image even with --quick (the generated one has no programs).
    const img = blocked ? undefined : await debianImage(p.bigSize, (l) => ctx.progress.note(l));
    const trials = img ? await interleave(snaps, ctx.repeat, (s, rep) => trial(s, ctx, img, p, rep), ctx.progress, 'driver-compare via containerd') : new Map<Snapshotter, Trial[]>();
    const N = p.containers;
    const med = (s: Snapshotter, f: (t: Trial) => number) => summarize(trials.get(s)!.map(f));
    const rows: Row[] = snaps.map((s) => {
      const imp = med(s, (t) => t.importSeconds);
      const start = summarize(trials.get(s)!.flatMap((t) => t.startMs));
      return {
        snapshotter: s,
        'empty store MiB': med(s, (t) => t.empty.bytes).median / MiB,
        'image MiB': med(s, (t) => t.imported.bytes - t.empty.bytes).median / MiB,
        'host inodes for the image': med(s, (t) => t.imported.inodes - t.empty.inodes).median,
        'import s': imp.median, 'import s min': imp.min, 'import s max': imp.max,
        'container start ms': start.median, 'container start ms min': start.min, 'container start ms max': start.max,
        [`${N} containers started MiB`]: med(s, (t) => t.containers.bytes - t.imported.bytes).median / MiB,
        'first write KiB': med(s, (t) => t.firstWrite.hostBytes).median / KiB,
        'first write ms': med(s, (t) => t.firstWrite.ms).median,
        'second write ms': med(s, (t) => t.firstWrite.secondMs).median,
        [`${N} containers x ${FEW_FILES.length} files modified MiB`]: med(s, (t) => t.afterFew.bytes - t.afterFirstWrite.bytes).median / MiB,
        'cache: files read MiB': med(s, (t) => t.cache.filesBytes).median / MiB,
        'cache: meminfo Cached delta MiB': med(s, (t) => t.cache.meminfoDelta).median / MiB,
      };
    });
    const by = (s: Snapshotter) => rows.find((r) => r.snapshotter === s);
    const th = by('thinsim');
    const ov = by('overlayfs');
    const f = (v: unknown, dg = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(dg) : 'n/a');
    const readSetMiB = (p.bigSize + MED_SIZE) / MiB;
    const findings = th && ov ? [
      `Import through containerd: thinsim ${f(th['import s'])} s vs overlayfs ${f(ov['import s'])} s (median); the image takes ${f(th['image MiB'])} MiB of pool (${th['host inodes for the image']} host inodes: ext4 lives inside the pool) vs ${f(ov['image MiB'])} MiB in overlayfs's directories (${ov['host inodes for the image']} host inodes).`,
      `Container start (ctr run -d: Prepare, mount, runc): thinsim ${f(th['container start ms'], 0)} ms vs overlayfs ${f(ov['container start ms'], 0)} ms (median over every container).`,
      `First ${p.writeBytes / KiB} KiB write into the ${p.bigSize / MiB} MiB file inside a container (dd with fsync, through ctr task exec): thinsim allocates ${f(th['first write KiB'], 0)} KiB on the host (64 KiB chunks) in ${f(th['first write ms'], 0)} ms; overlayfs copies the file up, ${f(ov['first write KiB'], 0)} KiB in ${f(ov['first write ms'], 0)} ms. The second write: ${f(th['second write ms'], 0)} vs ${f(ov['second write ms'], 0)} ms.`,
      `${N} containers appending to ${FEW_FILES.length} files each: thinsim grows by ${f(th[`${N} containers x ${FEW_FILES.length} files modified MiB`], 2)} MiB, overlayfs by ${f(ov[`${N} containers x ${FEW_FILES.length} files modified MiB`], 2)} MiB.`,
      `Page cache after ${N} containers read the same ${readSetMiB} MiB: thinsim ${f(th['cache: files read MiB'])} MiB by fincore (one copy per container: each has its own ext4) vs overlayfs ${f(ov['cache: files read MiB'])} MiB (one lower file); /proc/meminfo Cached +${f(th['cache: meminfo Cached delta MiB'])} vs +${f(ov['cache: meminfo Cached delta MiB'])} MiB (whole machine, noisy on a shared one).`,
    ] : ['containerd could not run here, so there is no comparison; see "Skipped here".'];
    return {
      params: {
        image: img?.description ?? 'not built', 'big file bytes': p.bigSize, containers: N, 'files each container modifies': FEW_FILES.map((x) => '/' + x).join(' '),
        'first write': `${p.writeBytes} bytes at offset ${p.writeOffset}, fsync`, 'files read': p.readSet.map((x) => '/' + x).join(' '),
        'thinsim pool': 'loop-lvm, sparse 100G data / 2G metadata, 64 KiB chunks', 'base device': `${p.baseSize / GiB} GiB ext4 (Docker's mkfs options)`,
        repeat: ctx.repeat, quick: ctx.quick,
      },
      method: [
        'Each trial starts a private containerd 1.6 (src/containerd/daemon.ts: its own root, state and sockets) with, for thinsim, `thinsim snapshotter` as the proxy plugin `thinsim` on a fresh pool whose base device was made and formatted first.',
        'Import: `ctr image import --snapshotter S` of the docker-archive, then sync -f of the store. Container start: `ctr run -d` of `sleep` (Prepare, mount, runc create and start).',
        'Host bytes and inodes: du -x -s of the store (thinsim: the pool directory, data and metadata files as allocated plus the records; overlayfs: root/io.containerd.snapshotter.v1.overlayfs), after sync -f of it and of every container rootfs.',
        `Page cache: the pages of every container's view of ${p.readSet.map((x) => '/' + x).join(' and ')} (the host path under the task's rootfs mount; thinsim also the pool's data file) are dropped with dd iflag=nocache, then each container reads them with cat in \`ctr task exec\`; fincore of the views (overlayfs: the first container's only, since every view is the same lower file) and the /proc/meminfo Cached delta.`,
        `First write: \`ctr task exec\` of dd writing ${p.writeBytes} bytes at offset ${p.writeOffset} with conv=notrunc,fsync, timed around ctr; host bytes by du before and after.`,
        'Repeats interleaved across snapshotters; medians over repeats (container starts over every container of every repeat).',
      ],
      findings,
      sections: rows.length === 0 ? [] : [
        { title: 'Time', charts: [
          { id: 'import', title: 'ctr image import (median, bars: min..max)', mark: 'bar', x: { field: 'snapshotter', title: 'snapshotter', type: 'nominal' }, y: { field: 'import s', title: 'seconds' }, range: { low: 'import s min', high: 'import s max' }, data: rows },
          { id: 'start', title: 'ctr run -d (median over containers, bars: min..max)', mark: 'bar', x: { field: 'snapshotter', title: 'snapshotter', type: 'nominal' }, y: { field: 'container start ms', title: 'ms' }, range: { low: 'container start ms min', high: 'container start ms max' }, data: rows },
        ] },
        { title: 'All figures', tables: [{ title: 'per snapshotter (medians)', columns: Object.keys(rows[0]), rows: rows.map((r) => Object.values(r)) }] },
      ],
    };
  },
};
