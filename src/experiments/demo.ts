/**
 * The demo: Docker's devicemapper story told on a real thinsim pool, with a real image.
 * A loop-lvm pool with Docker's default sizes (sparse, so it costs almost nothing); an
 * image generated here as a `docker save` archive (layer 1 some files, layer 2 adds,
 * modifies and deletes them with a whiteout and an opaque directory); the import, one
 * thin snapshot per layer; two containers (init layer + read-write layer); copy-on-write
 * of one chunk for a small write into a big file; `docker info`; the layer tree with its
 * usage; the space that comes back when a container goes; a full metadata check.
 *
 * Real filesystems (ext4 through NBD) when the tools and permissions allow, block-level
 * synthetic layers otherwise; the demo says which and why. Every number printed is read
 * from the pool (status, usage, thin_delta-style diffs) or from the host (allocated
 * bytes of the data file), never computed beside it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createContainer, removeContainer } from '../layers/container';
import { findTool, runToolOk } from '../tools';
import { importImage } from '../layers/image';
import { LayerStore } from '../layers/snapshotter';
import { synthesize } from '../layers/synth';
import { Pool } from '../pool/pool';
import { dockerInfo, humanSize } from '../pool/status-format';
import { writeDockerArchive, type GenEntry } from './image-gen';

export interface DemoOptions {
  dir?: string;
  keep?: boolean;
  /** Force the block-level path even where filesystems could be mounted. */
  synthetic?: boolean;
  log: (line: string) => void;
}

const MiB = 2 ** 20;
const short = (s: string) => s.replace(/^sha256:/, '').slice(0, 12);
const allocated = (file: string) => fs.statSync(file).blocks * 512;
let stepNo = 0;
const step = () => ++stepNo;

/** Why filesystems cannot be mounted here, or undefined when they can. */
export function realFilesystemBlocker(): string | undefined {
  const gone = ['nbdfuse', 'mkfs.ext4', 'tune2fs', 'filefrag'].filter((t) => !findTool(t));
  if (gone.length) return `${gone.join(', ')} not installed`;
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse';
  if (process.getuid?.() !== 0 && !findTool('fuse2fs')) return 'not root and no fuse2fs';
  return undefined;
}

/** The demo image: layer 1 lays out a small tree, layer 2 changes it. */
export function demoImageLayers(): GenEntry[][] {
  const docs: GenEntry[] = [];
  for (let i = 0; i < 20; i++) docs.push({ path: `usr/share/doc/pkg${i}/README`, type: 'file', content: `package ${i}\n`.repeat(50) });
  return [
    [
      { path: 'etc', type: 'dir' }, { path: 'etc/os-release', type: 'file', content: 'NAME="thinsim demo"\nVERSION_ID=1\n' },
      { path: 'etc/motd', type: 'file', content: 'Welcome (layer 1)\n' },
      { path: 'app', type: 'dir' }, { path: 'app/bin', type: 'dir' },
      { path: 'app/bin/server', type: 'file', content: { size: 8 * MiB, seed: 7 }, mode: 0o755 },
      { path: 'app/config', type: 'dir' }, { path: 'app/config/main.conf', type: 'file', content: 'port=80\n' },
      { path: 'app/config/legacy.conf', type: 'file', content: 'old=1\n' },
      { path: 'usr/share/doc', type: 'dir' }, ...docs,
      { path: 'bin', type: 'dir' }, { path: 'bin/sh', type: 'symlink', target: '/app/bin/server' },
    ],
    [
      { path: 'etc/motd', type: 'file', content: 'Welcome (layer 2 changed me)\n' },
      { path: 'app/config/legacy.conf', type: 'whiteout' },
      { path: 'app/plugins', type: 'dir' }, { path: 'app/plugins/cache.so', type: 'file', content: { size: 2 * MiB, seed: 8 } },
      { path: 'usr/share/doc', type: 'opaque' }, { path: 'usr/share/doc/NOTICE', type: 'file', content: 'docs were trimmed by layer 2\n' },
    ],
  ];
}

/** The layer tree, parents before children, with thin_ls-style usage from the pool. */
function printTree(store: LayerStore, log: (l: string) => void, label: (name: string) => string): void {
  const usage = new Map(store.usage().map((u) => [u.name, u]));
  const depth = new Map<string, number>();
  log(`   ${'LAYER'.padEnd(44)} DEV  ${'MAPPED'.padStart(9)} ${'EXCLUSIVE'.padStart(9)} ${'SHARED'.padStart(9)}`);
  for (const l of store.list()) {
    const d = l.parent === undefined ? 0 : (depth.get(l.parent) ?? 0) + 1;
    depth.set(l.name, d);
    const u = usage.get(l.name)!;
    const name = `${'  '.repeat(d)}${d ? '└ ' : ''}${label(l.name)} (${l.kind})`;
    log(`   ${name.padEnd(44)} ${String(l.deviceId).padStart(3)}  ${humanSize(u.mappedBytes).padStart(9)} ${humanSize(u.exclusiveBytes).padStart(9)} ${humanSize(u.sharedBytes).padStart(9)}`);
  }
}

/** The fs block holding byte `offset` of `file`, as a byte offset on the device (filefrag's FIEMAP). */
async function deviceOffsetOf(file: string, offset: number): Promise<number | undefined> {
  const stdout = await runToolOk(findTool('filefrag')!, ['-v', '-b4096', file], 'filefrag');
  const want = Math.floor(offset / 4096);
  for (const m of stdout.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*\d+:/gm)) {
    const [lo, hi, phys] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (want >= lo && want <= hi) return (phys + want - lo) * 4096 + (offset % 4096);
  }
  return undefined;
}

async function realStory(store: LayerStore, dir: string, log: (l: string) => void): Promise<void> {
  const cb = store.pool.chunkBytes;
  log(`${step()}. An image, generated here as a docker save archive (tar-stream): 2 layers`);
  const archive = path.join(dir, 'demo-image.tar');
  const gen = await writeDockerArchive(archive, { repoTag: 'thinsim/demo:1', layers: demoImageLayers() });
  log(`   ${archive}: image ${short(gen.id)}, layers ${gen.diffIds.map(short).join(', ')}`);
  log(`${step()}. thinsim image import: per layer, a snapshot of the one below, mounted (ext4 through NBD), the tar applied, committed under its ChainID`);
  const r = await importImage(store, archive, {
    onProgress: (p) => { if (p.event === 'layer-done') log(`   layer ${p.layer}/${p.layers} done: ${humanSize(p.report!.tarBytes)} tar, ${p.report!.files} files, ${p.report!.whiteouts} whiteout(s), ${p.report!.opaqueDirs} opaque dir(s), ${p.report!.seconds.toFixed(1)}s`); },
  });
  const chain = r.images[0].layers.map((l) => l.name);
  const top = chain[chain.length - 1];
  const seen = await store.withTree(top, async (tree) => {
    const files = await tree.list();
    const inDir = (dir: string) => files.filter((f) => path.posix.dirname(f.path) === dir).map((f) => path.posix.basename(f.path)).join(' ');
    return { motd: (await tree.read('etc/motd')).toString('utf8').trim(), config: inDir('/app/config'), docs: inDir('/usr/share/doc') };
  }, { readOnly: true });
  log(`   top layer, mounted read-only: /etc/motd "${seen.motd}"; /app/config holds "${seen.config}" (legacy.conf whited out); /usr/share/doc holds "${seen.docs}" (opaque: layer 1's 20 packages gone)`);

  log(`${step()}. Two containers: each an init layer (Docker's /etc/hosts, /.dockerenv, ...) and a read-write layer on top`);
  const web = await createContainer(store, 'thinsim/demo:1', 'web');
  const db = await createContainer(store, 'thinsim/demo:1', 'db');
  log(`   web ${web.containerId.slice(0, 12)} (mount-id ${web.mountId.slice(0, 12)}), db ${db.containerId.slice(0, 12)}; the init layer added ${web.initFiles.length} paths`);

  log(`${step()}. Copy-on-write: web writes 18 bytes at 1 MiB into /app/bin/server (8 MiB, shared with the image)`);
  await store.pool.commit();
  const used0 = store.pool.status().usedDataBlocks;
  const where = await store.withTree(web.mountId, async (tree) => {
    const at = await deviceOffsetOf(path.join(tree.root, 'app/bin/server'), MiB); // filefrag, another process
    await tree.write('app/bin/server', Buffer.from('web container data'), { offset: MiB });
    return at;
  });
  await store.pool.commit();
  const used1 = store.pool.status().usedDataBlocks;
  const changed = store.diff(web.initId, web.mountId);
  const chunks = changed.reduce((s, x) => s + x.length / cb, 0);
  const hit = where === undefined ? undefined : changed.find((x) => where >= x.offset && where < x.offset + x.length);
  log(`   the file's byte 1 MiB lives at device offset ${where ?? '?'} (filefrag), in chunk ${where === undefined ? '?' : Math.floor(where / cb)}`);
  log(`   pool data blocks used: ${used0} -> ${used1} (+${used1 - used0}); web now differs from its init layer in ${chunks} chunk(s) of ${cb / 1024} KiB:`);
  log(`   ${hit ? 'the written chunk is one of them: one chunk copied for the write' : 'the written chunk is not among them (unexpected)'}; the other ${chunks - (hit ? 1 : 0)} are ext4's own bookkeeping (inode times, journal)`);
  await store.withTree(db.mountId, (tree) => tree.write('dump.sql', Buffer.alloc(4 * MiB, 0x2a)));
  log(`   db writes a new 4 MiB file: its layer now holds ${humanSize(store.usage(db.mountId)[0].exclusiveBytes)} of its own`);

  log(`${step()}. The layer tree (thin_ls arithmetic: exclusive = only this device maps the block)`);
  const names = new Map<string, string>([...chain.map((c, i) => [c, `image layer ${i + 1} ${short(c)}`] as [string, string]),
    [web.initId, 'web-init'], [web.mountId, 'web'], [db.initId, 'db-init'], [db.mountId, 'db']]);
  printTree(store, log, (n) => names.get(n) ?? n);

  log(`${step()}. Removing container db: its layers are discarded (Docker's dm.blkdiscard) and deleted`);
  await store.pool.flush();
  const host0 = allocated(path.join(store.pool.dir, 'data'));
  const rm = await removeContainer(store, 'db');
  const host1 = allocated(path.join(store.pool.dir, 'data'));
  log(`   the pool freed ${humanSize(rm.freedBytes)} of data space; the data file's host allocation went ${humanSize(host0)} -> ${humanSize(host1)} (passdown punched the chunks)`);
}

async function syntheticStory(store: LayerStore, log: (l: string) => void): Promise<void> {
  const cb = store.pool.chunkBytes;
  log(`${step()}. Image layers, synthetic: block-level changes, no filesystem (thinsim layer synth)`);
  const s = await synthesize(store, { layers: 3, newPercent: 1, modifyPercent: 10, deletePercent: 5, seed: 1, prefix: 'layer', onLayer: (l) => log(`   ${l.name}: ${l.newChunks} new, ${l.modifiedChunks} modified, ${l.deletedChunks} discarded chunks; ${l.mappedChunks} mapped`) });
  const top = s.top!.name;
  log(`${step()}. Two containers: a read-write snapshot each on the top layer`);
  await store.prepare('web', top);
  await store.prepare('db', top);
  const mapped = store.pool.blockStatus(store.stat('web').deviceId, 0, store.stat('web').size).find((x) => x.mapped)!;
  log(`${step()}. Copy-on-write: web writes 18 bytes into a chunk it shares with the image`);
  await store.pool.commit();
  const used0 = store.pool.status().usedDataBlocks;
  await store.write('web', mapped.offset + 100, Buffer.from('web container data'));
  await store.pool.commit();
  const changed = store.diff(top, 'web');
  log(`   pool data blocks used +${store.pool.status().usedDataBlocks - used0}; web differs from the image in ${changed.reduce((n, x) => n + x.length / cb, 0)} chunk(s) of ${cb / 1024} KiB: one chunk copied`);
  await store.write('db', 0, Buffer.alloc(4 * MiB, 0x2a));
  log(`${step()}. The layer tree`);
  printTree(store, log, (n) => n);
  log(`${step()}. Removing container db: discarded, then deleted`);
  await store.pool.commit();
  const before = store.pool.status().usedDataBlocks;
  const host0 = allocated(path.join(store.pool.dir, 'data'));
  await store.remove('db');
  await store.pool.commit();
  log(`   the pool freed ${humanSize((before - store.pool.status().usedDataBlocks) * cb)}; host allocation ${humanSize(host0)} -> ${humanSize(allocated(path.join(store.pool.dir, 'data')))}`);
}

export async function runDemo(opts: DemoOptions): Promise<{ dir: string; ok: boolean; mode: 'ext4' | 'synthetic' }> {
  const log = opts.log;
  const t0 = performance.now();
  stepNo = 0;
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-demo-'));
  fs.mkdirSync(dir, { recursive: true });
  const poolDir = path.join(dir, 'devicemapper');
  log(`${step()}. A loop-lvm pool, as Docker makes in /var/lib/docker/devicemapper/devicemapper: sparse files of 100 GB data and 2 GB metadata`);
  await Pool.create(poolDir, { lowWaterMark: 0 }).close();
  log(`   ${poolDir}/data is ${fs.statSync(path.join(poolDir, 'data')).size} bytes long but uses ${allocated(path.join(poolDir, 'data'))} bytes on the host`);
  const blocker = opts.synthetic ? 'asked for with --synthetic' : realFilesystemBlocker();
  const mode = blocker ? 'synthetic' : 'ext4';
  log(`${step()}. ${blocker ? `Synthetic layers (${blocker}): block-level changes stand in for files` : 'Real filesystems: a 2 GiB base device (Docker\'s default is 10 GB; smaller keeps mkfs quick) gets ext4 with Docker\'s mkfs options; layers are mounted through NBD'}`);
  const store = await LayerStore.open(poolDir, { filesystem: blocker ? 'none' : 'ext4', baseSize: 2 * 2 ** 30 });
  try {
    if (mode === 'ext4') await realStory(store, dir, log); else await syntheticStory(store, log);
    log(`${step()}. docker info, Storage Driver: devicemapper`);
    for (const [k, v] of dockerInfo(store.pool.status())) log(`   ${k}: ${v}`);
  } finally {
    await store.close();
  }
  log(`${step()}. Full metadata check (reference counts recomputed from every mapping)`);
  const report = Pool.check(poolDir);
  log(`   ${report.ok ? 'clean' : 'DAMAGED'}: ${report.devices} devices, ${report.mappings} mappings, ${report.findings.length} findings; demo took ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  if (!opts.keep && !opts.dir) {
    fs.rmSync(dir, { recursive: true, force: true });
    log(`   (the pool was in a temporary directory; run "thinsim demo --keep" to keep it and inspect it)`);
  } else {
    log(`   the pool stays in ${poolDir}; try: thinsim image ls ${poolDir} ; thinsim container ls ${poolDir} ; thinsim layer ls ${poolDir}`);
  }
  log('   containerd can run containers on a pool like this one: thinsim snapshotter POOL --address SOCKET serves it as a proxy snapshotter (docs/containerd.md)');
  return { dir: poolDir, ok: report.ok, mode };
}
