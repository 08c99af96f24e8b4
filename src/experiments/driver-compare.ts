/**
 * driver-compare: the seed document's comparison of Docker's devicemapper and overlay2
 * storage drivers, measured on one image stored both ways.
 *
 * - devicemapper: a loop-lvm thinsim pool (Docker's sparse 100G/2G files, 64 KiB chunks)
 *   with LayerStore + importImage: each layer a thin snapshot carrying ext4 (mounted
 *   through NBD), containers with Docker's -init layer (container.ts).
 * - overlay2: overlay2.ts: each layer unpacked into its own diff/ (overlay whiteouts),
 *   containers mounted with the kernel's overlay filesystem.
 *
 * Per trial (one driver, one repeat, a fresh store): import the image; create N
 * containers and mount them; N containers read the same files (page cache); container 1
 * writes 4 KiB into the big file (copy-up vs one chunk); every container appends to a few
 * files. Host figures come from du -x (bytes, inodes), stat (the pool's files), fincore
 * and /proc/meminfo; nothing is computed beside them.
 *
 * Contract: every program runs asynchronously (the NBD server serving the devicemapper
 * mounts lives in this process); mounts are undone also when a trial fails.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError } from '../errors';
import { createContainer } from '../layers/container';
import { findTool, runTool, runToolOk } from '../tools';
import { importImage } from '../layers/image';
import { LayerStore } from '../layers/snapshotter';
import { Tree } from '../layers/tree';
import { Pool } from '../pool/pool';
import { BIG_FILE, BuiltImage, debianImage, FEW_FILES, generatedImage, MED_SIZE } from './dc-image';
import { realFilesystemBlocker } from './demo';
import { Experiment, ExperimentContext, GiB, KiB, MiB, requireSizeInMiB } from './experiment';
import * as host from './host';
import { Row } from './report/model';
import { interleave, payload, summarize } from './runner';
import { Overlay2Store, overlayUnavailable } from './overlay2';

export const DRIVERS = ['devicemapper', 'overlay2'] as const;
export type Driver = typeof DRIVERS[number];

export interface DcParams {
  bigSize: number;
  containers: number;
  baseSize: number;
  writeOffset: number;
  writeBytes: number;
  appendBytes: number;
  readSet: string[];
}

export function dcParams(ctx: { size: number; quick: boolean }): DcParams {
  return {
    bigSize: ctx.size, containers: ctx.quick ? 3 : 6, baseSize: ctx.quick ? GiB : 10 * GiB,
    writeOffset: Math.min(MiB, ctx.size / 2), writeBytes: 4 * KiB, appendBytes: 64,
    readSet: [BIG_FILE, 'opt/app/lib/libmed.so'],
  };
}

export interface Usage { bytes: number; inodes: number; dataAllocated?: number; metadataAllocated?: number; poolUsedBytes?: number }

export interface Trial {
  empty: Usage;
  imported: Usage;
  importSeconds: number;
  createMs: number[];
  mountMs: number[];
  containers: Usage;
  cache: { containerFilesBytes: number; plumbingBytes: number; meminfoDelta: number; readBytes: number };
  firstWrite: { firstMs: number; secondMs: number; hostBytes: number; poolBytes?: number; upperFileBytes?: number };
  afterFirstWrite: Usage;
  afterFew: Usage;
}

async function du(p: string): Promise<{ bytes: number; inodes: number }> {
  const b = await runToolOk('du', ['-x', '-s', '-B1', p], 'du');
  const i = await runToolOk('du', ['-x', '-s', '--inodes', p], 'du --inodes');
  return { bytes: Number(b.split(/\s/)[0]), inodes: Number(i.split(/\s/)[0]) };
}

async function fincore(p: string): Promise<number> {
  const r = await runTool('fincore', ['--json', '--bytes', p]);
  if (r.status !== 0) throw new ThinError('E_IO', `fincore ${p}: ${r.stderr.trim()}`);
  return Number((JSON.parse(r.stdout) as { fincore: { res: number | string }[] }).fincore[0].res);
}

async function dropCache(p: string): Promise<void> {
  await runToolOk('dd', [`if=${p}`, 'iflag=nocache', 'count=0', 'status=none'], `drop the cached pages of ${p}`);
}

/** What a trial needs from a store: containers, their trees, a sync, host usage, cache plumbing. */
interface Side {
  importImage(): Promise<void>;
  /** Create and mount container i; its tree. */
  container(i: number): Promise<{ createMs: number; mountMs: number; root: string }>;
  sync(): Promise<void>;
  usage(): Promise<Usage>;
  /** Drop every cached copy of `rel` (container files, and what lies under them). */
  drop(rel: string): Promise<void>;
  /** Page-cache bytes holding `rel`: the files containers see, and thinsim's own plumbing below them. */
  cached(rel: string): Promise<{ files: number; plumbing: number }>;
  firstWriteExtra?(rel: string): Promise<number>;
  close(): Promise<void>;
}

async function dmSide(dir: string, img: BuiltImage, p: DcParams): Promise<Side> {
  const poolDir = path.join(dir, 'devicemapper');
  await Pool.create(poolDir, { lowWaterMark: 0 }).close();
  const store = await LayerStore.open(poolDir, { filesystem: 'ext4', baseSize: p.baseSize });
  // Docker makes and formats the base device when the daemon starts, before any pull.
  await store.prepare('base-warmup');
  await store.remove('base-warmup');
  const mounts: { root: string; file: string; unmount(): Promise<void> }[] = [];
  const files = (rel: string) => mounts.map((m) => path.join(m.root, rel));
  const fuseFiles = () => mounts.map((m) => m.file);
  const dataFile = path.join(poolDir, 'data');
  const side: Side = {
    async importImage() { await importImage(store, img.file); },
    async container(i) {
      const t0 = performance.now();
      const c = await createContainer(store, img.tag, `c${i}`);
      const t1 = performance.now();
      const m = await store.mount(c.mountId, { readOnly: false });
      mounts.push({ root: m.path, file: m.file, unmount: m.unmount });
      return { createMs: t1 - t0, mountMs: performance.now() - t1, root: m.path };
    },
    async sync() {
      for (const m of mounts) await runToolOk('sync', ['-f', m.root], 'sync -f');
      await store.pool.flush();
    },
    async usage() {
      await side.sync();
      const d = await du(poolDir);
      const st = store.pool.status();
      return { ...d, dataAllocated: host.fileSpace(dataFile).allocatedBytes, metadataAllocated: host.fileSpace(path.join(poolDir, 'metadata')).allocatedBytes, poolUsedBytes: st.usedDataBlocks * store.pool.chunkBytes };
    },
    async drop(rel) {
      for (const f of [...files(rel), ...fuseFiles(), dataFile]) await dropCache(f);
    },
    async cached(rel) {
      let f = 0;
      for (const x of files(rel)) f += await fincore(x);
      let plumbing = await fincore(dataFile);
      for (const x of fuseFiles()) plumbing += await fincore(x);
      return { files: f, plumbing };
    },
    async close() {
      await store.close(); // tears down every mount, reporting any that stays busy
    },
  };
  return side;
}

async function o2Side(dir: string, img: BuiltImage): Promise<Side & { store: Overlay2Store; ids: string[] }> {
  const root = path.join(dir, 'overlay2');
  const store = new Overlay2Store(root);
  const ids: string[] = [];
  const merged: string[] = [];
  const side = {
    store, ids,
    async importImage() { await store.importImage(img.file); },
    async container(i: number) {
      const t0 = performance.now();
      const c = await store.createContainer();
      const t1 = performance.now();
      ids[i] = c.id;
      const m = await store.mount(c.id);
      merged.push(m);
      return { createMs: t1 - t0, mountMs: performance.now() - t1, root: m };
    },
    async sync() { for (const m of merged) await runToolOk('sync', ['-f', m], 'sync -f'); if (!merged.length) await runToolOk('sync', ['-f', root], 'sync -f'); },
    async usage() { await side.sync(); return du(root); },
    async real(rel: string) {
      const out = new Set<string>();
      for (const id of ids) { const r = await store.realPath(id, rel); if (r) out.add(fs.realpathSync(r)); }
      return [...out];
    },
    async drop(rel: string) { for (const f of await side.real(rel)) await dropCache(f); },
    async cached(rel: string) {
      // Every container's view of the file is the one lower file (or its own copy-up): count each real file once.
      let f = 0;
      for (const x of await side.real(rel)) f += await fincore(x);
      return { files: f, plumbing: 0 };
    },
    async firstWriteExtra(rel: string) { const r = await store.realPath(ids[0], rel); return r ? host.fileSpace(r).allocatedBytes : NaN; },
    async close() { await store.close(); },
  };
  return side;
}

async function trial(driver: Driver, ctx: ExperimentContext, img: BuiltImage, p: DcParams): Promise<Trial> {
  const dir = host.mkTemp(ctx.workDir, `${driver}-`);
  const side = driver === 'devicemapper' ? await dmSide(dir, img, p) : await o2Side(dir, img);
  try {
    const empty = await side.usage();
    const t0 = performance.now();
    await side.importImage();
    await side.sync();
    const importSeconds = (performance.now() - t0) / 1000;
    const imported = await side.usage();
    const createMs: number[] = [];
    const mountMs: number[] = [];
    const roots: string[] = [];
    for (let i = 0; i < p.containers; i++) {
      const c = await side.container(i);
      createMs.push(c.createMs); mountMs.push(c.mountMs); roots.push(c.root);
    }
    const containers = await side.usage();

    // Page cache: every container reads the same files, after their cached pages are dropped.
    await side.sync();
    for (const rel of p.readSet) await side.drop(rel);
    const mem0 = host.meminfo().cached;
    let readBytes = 0;
    for (const r of roots) for (const rel of p.readSet) readBytes += await new Tree(r).readCount(rel);
    const mem1 = host.meminfo().cached;
    let files = 0;
    let plumbing = 0;
    for (const rel of p.readSet) { const c = await side.cached(rel); files += c.files; plumbing += c.plumbing; }

    // Container 1's first small write into the big file shared with the image.
    const before = await side.usage();
    const data = payload(p.writeBytes, 99);
    // Timed inside the tree worker: open, write, fsync (this process serves the mounts).
    const firstMs = await new Tree(roots[0]).write(BIG_FILE, data, { offset: p.writeOffset });
    const secondMs = await new Tree(roots[0]).write(BIG_FILE, data, { offset: p.writeOffset });
    const afterFirstWrite = await side.usage();
    const firstWrite = {
      firstMs, secondMs, hostBytes: afterFirstWrite.bytes - before.bytes,
      poolBytes: before.poolUsedBytes === undefined ? undefined : afterFirstWrite.poolUsedBytes! - before.poolUsedBytes,
      upperFileBytes: side.firstWriteExtra ? await side.firstWriteExtra(BIG_FILE) : undefined,
    };

    // Every container modifies a few files (appends 64 bytes to each).
    const tail = Buffer.from('x'.repeat(p.appendBytes - 1) + '\n');
    for (const r of roots) for (const rel of FEW_FILES) await new Tree(r).write(rel, tail, { append: true });
    const afterFew = await side.usage();
    return { empty, imported, importSeconds, createMs, mountMs, containers, cache: { containerFilesBytes: files, plumbingBytes: plumbing, meminfoDelta: mem1 - mem0, readBytes }, firstWrite, afterFirstWrite, afterFew };
  } finally {
    await side.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const driverCompare: Experiment = {
  name: 'driver-compare',
  title: 'devicemapper vs overlay2: one image stored both ways',
  question: 'How do Docker\'s devicemapper (thin snapshots with ext4) and overlay2 (a directory per layer, the kernel\'s overlay mount) compare on one image: host space and inodes, import and container creation time, the cost of a container\'s first small write into a big file, space after N containers change a few files, and page cache when N containers read the same files?',
  sizeMeans: 'the big file in the image that containers read and write into',
  defaults: { size: 64 * MiB, repeat: 2 },
  quick: { size: 8 * MiB, repeat: 1 },
  tools: ['mmdebstrap', 'umoci', 'skopeo', 'nbdfuse', 'mkfs.ext4', 'mount', 'fincore', 'du', 'setfattr', 'tar'],
  async run(ctx) {
    requireSizeInMiB(ctx.size, 2);
    const p = dcParams(ctx);
    const drivers: Driver[] = [];
    const dmBlock = realFilesystemBlocker() ?? (host.isRoot() ? undefined : 'devicemapper containers are mounted with mount -o loop, which needs root');
    if (dmBlock) ctx.skip('devicemapper', dmBlock); else drivers.push('devicemapper');
    const o2Block = overlayUnavailable() ?? (findTool('setfattr') ? undefined : 'setfattr is not installed (Debian package attr): opaque directories need trusted.overlay.opaque');
    if (o2Block) ctx.skip('overlay2', o2Block); else drivers.push('overlay2');

    let img: BuiltImage;
    const debBlock = ['mmdebstrap', 'umoci', 'skopeo'].map((t) => host.toolMissing(t, t)).find(Boolean) ?? (host.isRoot() ? undefined : 'mmdebstrap and umoci unpack build the root filesystem as root');
    if (ctx.quick) {
      img = await generatedImage(ctx.workDir, p.bigSize);
    } else if (debBlock) {
      ctx.skip('Debian image', `${debBlock}; the generated --quick image is used instead`);
      img = await generatedImage(ctx.workDir, p.bigSize);
    } else {
      img = await debianImage(p.bigSize, (l) => ctx.progress.note(l));
    }
    const imageBytes = fs.statSync(img.file).size;

    const trials = await interleave(drivers, ctx.repeat, (d) => trial(d, ctx, img, p), ctx.progress, 'driver-compare');
    const med = (d: Driver, f: (t: Trial) => number) => summarize(trials.get(d)!.map(f));
    const N = p.containers;
    const rows: Row[] = drivers.map((d) => {
      const imp = med(d, (t) => t.importSeconds);
      const create = summarize(trials.get(d)!.flatMap((t) => t.createMs));
      const mount = summarize(trials.get(d)!.flatMap((t) => t.mountMs));
      const fw = med(d, (t) => t.firstWrite.firstMs);
      return {
        driver: d,
        'empty store MiB': med(d, (t) => t.empty.bytes).median / MiB,
        'image MiB': med(d, (t) => t.imported.bytes - t.empty.bytes).median / MiB,
        'store after import MiB': med(d, (t) => t.imported.bytes).median / MiB,
        'host inodes for the image': med(d, (t) => t.imported.inodes - t.empty.inodes).median,
        'pool data allocated MiB': d === 'devicemapper' ? med(d, (t) => t.imported.dataAllocated!).median / MiB : NaN,
        'pool metadata allocated MiB': d === 'devicemapper' ? med(d, (t) => t.imported.metadataAllocated!).median / MiB : NaN,
        'import s': imp.median, 'import s min': imp.min, 'import s max': imp.max,
        'create ms': create.median, 'create ms min': create.min, 'create ms max': create.max,
        'mount ms': mount.median, 'mount ms min': mount.min, 'mount ms max': mount.max,
        [`${N} containers created MiB`]: med(d, (t) => t.containers.bytes - t.imported.bytes).median / MiB,
        'first write KiB': med(d, (t) => t.firstWrite.hostBytes).median / KiB,
        'first write pool KiB': d === 'devicemapper' ? med(d, (t) => t.firstWrite.poolBytes!).median / KiB : NaN,
        'upper copy KiB': d === 'overlay2' ? med(d, (t) => t.firstWrite.upperFileBytes!).median / KiB : NaN,
        'first write ms': fw.median, 'first write ms min': fw.min, 'first write ms max': fw.max,
        'second write ms': med(d, (t) => t.firstWrite.secondMs).median,
        [`${N} containers x ${FEW_FILES.length} files modified MiB`]: med(d, (t) => t.afterFew.bytes - t.afterFirstWrite.bytes).median / MiB,
        'growth after import MiB': med(d, (t) => t.afterFew.bytes - t.imported.bytes).median / MiB,
        'cache: container files MiB': med(d, (t) => t.cache.containerFilesBytes).median / MiB,
        'cache: thinsim plumbing MiB': med(d, (t) => t.cache.plumbingBytes).median / MiB,
        'cache: meminfo Cached delta MiB': med(d, (t) => t.cache.meminfoDelta).median / MiB,
        'bytes read MiB': med(d, (t) => t.cache.readBytes).median / MiB,
      };
    });
    const pick = (...ks: string[]) => rows.map((r) => Object.fromEntries(ks.map((k) => [k, r[k]])));
    const by = (d: Driver) => rows.find((r) => r.driver === d);
    const dm = by('devicemapper');
    const o2 = by('overlay2');
    const f = (v: unknown, dg = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(dg) : 'n/a');
    const readSetMiB = (p.bigSize + MED_SIZE) / MiB;
    const findings: string[] = [];
    if (dm && o2) {
      findings.push(
        `Host space for the image: devicemapper ${f(dm['image MiB'])} MiB (the pool's data file allocation grows by what ext4 writes, in 64 KiB chunks; the empty pool with its formatted ${p.baseSize / GiB} GiB base device already holds ${f(dm['empty store MiB'])} MiB) vs overlay2 ${f(o2['image MiB'])} MiB of diff directories; host inodes: ${dm['host inodes for the image']} vs ${o2['host inodes for the image']} (devicemapper keeps files inside ext4 on the pool, overlay2 one host inode per file per layer).`,
        `Container creation (init layer + container layer, median): devicemapper ${f(dm['create ms'], 0)} ms + ${f(dm['mount ms'], 0)} ms to mount vs overlay2 ${f(o2['create ms'], 0)} ms + ${f(o2['mount ms'], 0)} ms.`,
        `First 4 KiB write into the ${p.bigSize / MiB} MiB file: overlay2 copies the whole file up (${f(o2['first write KiB'], 0)} KiB newly allocated on the host, ${f(o2['first write ms'])} ms) while devicemapper copies chunks (${f(dm['first write pool KiB'], 0)} KiB of pool data, ${f(dm['first write KiB'], 0)} KiB on the host: whole 64 KiB chunks, the written one and any ext4 metadata chunks the fsync touched; ${f(dm['first write ms'])} ms). The second write costs ${f(o2['second write ms'])} vs ${f(dm['second write ms'])} ms.`,
        `${N} containers appending to ${FEW_FILES.length} files each: overlay2 grows by ${f(o2[`${N} containers x ${FEW_FILES.length} files modified MiB`], 2)} MiB (each file copied up whole, ${FEW_FILES.join(', ')}), devicemapper by ${f(dm[`${N} containers x ${FEW_FILES.length} files modified MiB`], 2)} MiB (chunks); one image is ${f(dm['image MiB'])} / ${f(o2['image MiB'])} MiB.`,
        `Page cache after ${N} containers read the same ${readSetMiB} MiB: overlay2 caches one copy (${f(o2['cache: container files MiB'])} MiB by fincore of the lower files; /proc/meminfo Cached +${f(o2['cache: meminfo Cached delta MiB'])} MiB), devicemapper one per container (${f(dm['cache: container files MiB'])} MiB by fincore of each container's file); below them fincore finds another ${f(dm['cache: thinsim plumbing MiB'])} MiB in thinsim's userspace plumbing (the nbdfuse files under the loop mounts and the pool's data file), which the kernel's dm-thin would not have. The machine-wide Cached delta over the reads was +${f(dm['cache: meminfo Cached delta MiB'])} MiB (shared machine: other tenants' cache comes and goes in it).`,
      );
    } else {
      findings.push('Only one driver (or none) could run here, so there is no comparison; see "Skipped here".');
    }
    const sizeStage = (r: Row) => [
      { driver: r.driver, stage: 'empty store', MiB: r['empty store MiB'] },
      { driver: r.driver, stage: 'image', MiB: r['image MiB'] },
      { driver: r.driver, stage: `${N} containers`, MiB: r[`${N} containers created MiB`] },
      { driver: r.driver, stage: 'files modified', MiB: r[`${N} containers x ${FEW_FILES.length} files modified MiB`] },
    ];
    return {
      params: {
        image: img.description, 'image archive bytes': imageBytes, 'image cached': img.cached, 'image build s': Number(img.buildSeconds.toFixed(1)),
        ...(img.cacheDir ? { 'image cache': img.cacheDir } : {}),
        'big file': `/${BIG_FILE}`, 'big file bytes': p.bigSize, containers: N, 'files each container modifies': FEW_FILES.map((x) => '/' + x).join(' '),
        'append bytes': p.appendBytes, 'first write': `${p.writeBytes} bytes at offset ${p.writeOffset}, fsync`, 'files read': p.readSet.map((x) => '/' + x).join(' '),
        'devicemapper pool': 'loop-lvm, sparse 100G data / 2G metadata, 64 KiB chunks, zeroing on', 'base device': `${p.baseSize / GiB} GiB ext4 (Docker's mkfs options)`,
        repeat: ctx.repeat, quick: ctx.quick,
      },
      method: [
        `Image: ${img.description}${img.cached ? ` (taken from the cache; it took ${img.buildSeconds.toFixed(0)} s to build)` : ''}.`,
        'devicemapper: thinsim image import into a fresh loop-lvm pool whose base device was made and formatted first (as the daemon does at start); each layer a thin snapshot with ext4, mounted through thinsim\'s NBD export, nbdfuse and mount -o loop; containers via thinsim container create (init layer + container layer), then the container layer mounted read-write.',
        'overlay2: the same archive applied layer by layer into overlay2/<id>/diff (src/layers/apply.ts in overlay whiteout mode: character device 0/0 for a deleted file, trusted.overlay.opaque=y for an opaque directory), with link, lower, work/ and l/<short link> as Docker lays them out; containers get <id>-init (init files made through an overlay mount) and <id>, mounted with mount -t overlay (lowerdir, upperdir, workdir).',
        'Host bytes and inodes: du -x -s -B1 and du -x -s --inodes of the store directory (devicemapper: the pool directory, i.e. the data and metadata files as allocated plus Docker\'s records; overlay2: the overlay2 directory, mounts excluded), after sync -f of every mounted container and a pool flush.',
        'Import time: the import call to its end and a sync. Container creation: the create call (init layer included); mount separately.',
        `First write: container 1 opens the big file, writes ${p.writeBytes} bytes at offset ${p.writeOffset} and fsyncs (timed from open to close); then the same again (second write). Bytes newly allocated = du of the store after - before (sync -f, pool flush); devicemapper also gives the pool's used data blocks delta.`,
        `Page cache: after a sync, the cached pages of every file involved are dropped with dd iflag=nocache (POSIX_FADV_DONTNEED per file: each container's file, and for devicemapper also each nbdfuse file under a loop mount and the pool's data file; for overlay2 the lower files); then every container reads ${p.readSet.map((x) => '/' + x).join(' and ')} in full. Measured with fincore on the files themselves (devicemapper: each container's file, one inode per container filesystem; overlay2: the real lower files, counted once since every container's view maps to them), and as the /proc/meminfo Cached delta over the reads (whole machine, so noisy under other tenants).`,
        `Modified files: every container appends ${p.appendBytes} bytes to ${FEW_FILES.map((x) => '/' + x).join(', ')}; growth by du as above.`,
        'Repeats interleaved across drivers (devicemapper, overlay2, devicemapper, ...), each on a fresh store; medians with min and max over repeats (container times over every container of every repeat).',
      ],
      findings,
      sections: rows.length === 0 ? [] : [
        { title: 'Host space and inodes', charts: [
          { id: 'space', title: 'Host bytes of the store by stage (du -x)', mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'MiB', title: 'MiB' }, series: { field: 'stage', title: 'stage' }, data: rows.flatMap(sizeStage) },
          { id: 'inodes', title: 'Host inodes the image takes (du --inodes)', mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'host inodes for the image', title: 'inodes' }, data: pick('driver', 'host inodes for the image', 'image MiB', 'pool data allocated MiB', 'pool metadata allocated MiB') },
        ] },
        { title: 'Time', charts: [
          { id: 'import', title: 'Image import (median, bars: min..max)', mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'import s', title: 'seconds' }, range: { low: 'import s min', high: 'import s max' }, data: pick('driver', 'import s', 'import s min', 'import s max') },
          { id: 'create', title: 'Container creation, init layer included (median over containers, bars: min..max)', mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'create ms', title: 'ms' }, range: { low: 'create ms min', high: 'create ms max' }, data: pick('driver', 'create ms', 'create ms min', 'create ms max', 'mount ms', 'mount ms min', 'mount ms max') },
        ] },
        { title: 'A container\'s first small write into a big file', charts: [
          { id: 'first-write', title: `Bytes newly allocated on the host by a ${p.writeBytes / KiB} KiB write into the ${p.bigSize / MiB} MiB file`, mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'first write KiB', title: 'KiB', log: true }, data: pick('driver', 'first write KiB', 'first write pool KiB', 'upper copy KiB') },
          { id: 'first-write-time', title: 'Write time, open to close with fsync: first (copy-up / copy-on-write) and second', mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'ms', title: 'ms' }, series: { field: 'write', title: 'write' }, data: rows.flatMap((r) => [{ driver: r.driver, write: 'first', ms: r['first write ms'] }, { driver: r.driver, write: 'second', ms: r['second write ms'] }]) },
        ] },
        { title: `${N} containers`, charts: [
          { id: 'n-containers', title: `Store growth: ${N} containers created, then each modifying ${FEW_FILES.length} files, beside one image`, mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'MiB', title: 'MiB' }, series: { field: 'measure', title: 'measure' },
            data: rows.flatMap((r) => [
              { driver: r.driver, measure: 'one image', MiB: r['image MiB'] },
              { driver: r.driver, measure: `${N} containers created`, MiB: r[`${N} containers created MiB`] },
              { driver: r.driver, measure: `${N} x ${FEW_FILES.length} files modified`, MiB: r[`${N} containers x ${FEW_FILES.length} files modified MiB`] },
              { driver: r.driver, measure: 'all growth after import', MiB: r['growth after import MiB'] },
            ]) },
          { id: 'page-cache', title: `Page cache after ${N} containers read the same ${readSetMiB} MiB`, mark: 'bar', x: { field: 'driver', title: 'driver', type: 'nominal' }, y: { field: 'MiB', title: 'MiB' }, series: { field: 'method', title: 'method' },
            data: rows.flatMap((r) => [
              { driver: r.driver, method: 'fincore: files the containers read', MiB: r['cache: container files MiB'] },
              { driver: r.driver, method: 'fincore: thinsim plumbing', MiB: r['cache: thinsim plumbing MiB'] },
              { driver: r.driver, method: '/proc/meminfo Cached delta', MiB: r['cache: meminfo Cached delta MiB'] },
            ]) },
        ] },
        { title: 'All figures', tables: [{ title: 'per driver (medians)', columns: Object.keys(rows[0]), rows: rows.map((r) => Object.values(r)) }] },
      ],
    };
  },
};
