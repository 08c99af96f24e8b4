/**
 * What the bad-input table (bad-input.test.ts) runs against: one shared pool with two
 * thin devices holding data, the files a user could give by mistake (a directory, a
 * regular file, garbage XML), and small image archives made with GNU tar (a good one,
 * one cut short, one gzipped, one whose layer is cut short). Nothing here writes tar
 * bytes itself: `tar` and `gzip` do.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpdir, tools09, tools1x, type TmpDir } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';

export interface Env {
  dir: TmpDir;
  /** A pool: device 1 (16M, 100 KiB written at 0), device 2 a snapshot of 1. */
  pool: string;
  /** A regular file, a directory, a path that does not exist (under a missing directory too). */
  file: string;
  emptyDir: string;
  missing: string;
  missingDir: string;
  /** thin_dump XML of `pool` (valid), and a file that is not XML. */
  xml: string;
  garbage: string;
  /** 100 KiB of bytes to write. */
  data: string;
  archives: { good: string; truncated: string; gzipped: string; badLayer: string };
  /** A pool for the layer, image and container rows (room for a base device). */
  imagePool: string;
  /** A private copy of `pool` (for rows that damage or change it). */
  copyPool(name: string): string;
}

export function makeEnv(): Env {
  const dir = tmpdir('thinsim-bad-input-');
  const pool = dir.file('pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '64M', '--metadata-size', '4M']);
  thinsimOk(['thin', 'create', pool, '1', '--size', '16M']);
  const data = dir.file('data.bin');
  fs.writeFileSync(data, Buffer.alloc(100 * 1024, 0x5a));
  thinsimOk(['thin', 'write', pool, '1', '-i', data]);
  thinsimOk(['thin', 'snap', pool, '2', '1']);
  const file = dir.file('regular-file');
  fs.writeFileSync(file, 'not a pool\n');
  const emptyDir = dir.file('empty-dir');
  fs.mkdirSync(emptyDir);
  const xml = dir.file('pool.xml');
  fs.writeFileSync(xml, thinsimOk(['dump', pool]));
  const garbage = dir.file('garbage.xml');
  fs.writeFileSync(garbage, '<superblock uuid="" time="0" transaction="1" data_block_size="128" nr_data_blocks="1024">\n  <device dev_id="1"');
  const imagePool = dir.file('image-pool');
  thinsimOk(['pool', 'create', imagePool, '--data-size', '1G', '--metadata-size', '8M']);
  return {
    dir, pool, file, imagePool, emptyDir, xml, garbage, data,
    missing: dir.file('no-such-thing'),
    missingDir: dir.file('no-such-dir/inside'),
    archives: makeArchives(dir),
    copyPool(name: string) {
      const to = dir.file(name);
      execFileSync('cp', ['-a', '--sparse=always', pool, to]);
      return to;
    },
  };
}

/** A one-layer docker-save archive made with GNU tar, and three damaged variants. */
function makeArchives(dir: TmpDir): Env['archives'] {
  const root = dir.file('img-root');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc', 'hello'), 'hello\n');
  fs.writeFileSync(path.join(root, 'blob'), Buffer.alloc(300_000, 0x42));
  const build = (name: string, cutLayerAt?: number): string => {
    const work = dir.file(`img-${name}`);
    fs.mkdirSync(work);
    const layer = path.join(work, 'layer.tar');
    execFileSync('tar', ['-cf', layer, '-C', root, '.']);
    const diffId = 'sha256:' + createHash('sha256').update(fs.readFileSync(layer)).digest('hex');
    if (cutLayerAt !== undefined) fs.truncateSync(layer, cutLayerAt);
    fs.writeFileSync(path.join(work, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } }));
    fs.writeFileSync(path.join(work, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [`bad-input:${name}`], Layers: ['layer.tar'] }]));
    const out = dir.file(`${name}.tar`);
    execFileSync('tar', ['-cf', out, '-C', work, 'manifest.json', 'config.json', 'layer.tar']);
    return out;
  };
  const good = build('good');
  const truncated = dir.file('truncated.tar');
  fs.writeFileSync(truncated, fs.readFileSync(good).subarray(0, 200_000));
  execFileSync('gzip', ['-k', good]);
  return { good, truncated, gzipped: `${good}.gz`, badLayer: build('bad-layer', 100_000) };
}

/**
 * What a pool holds, as thin_dump (1.x, else 0.9; thinsim dump where neither is installed)
 * prints its metadata, plus pool.json: equal before and after means untouched. Not the
 * metadata bytes: a read-write open that fails still commits on close, which rewrites
 * the superblock without changing what it describes.
 */
export function poolFingerprint(pool: string, metadata = path.join(pool, 'metadata')): string {
  const h = createHash('sha256');
  const tools = tools1x() ?? tools09();
  if (tools) {
    const d = tools.dump(metadata);
    if (d.status !== 0) throw new Error(`thin_dump ${metadata}: ${d.stderr}`);
    h.update(d.stdout);
  } else {
    h.update(thinsimOk(['dump', metadata]));
  }
  const table = path.join(pool, 'pool.json');
  h.update(fs.existsSync(table) ? fs.readFileSync(table) : Buffer.from('(no pool.json)'));
  return h.digest('hex');
}

/** `thinsim serve POOL --socket SOCK` in the background, once it prints its URI. */
export async function startServer(pool: string, socket: string): Promise<{ child: ChildProcess; stop(): Promise<number | null> }> {
  const bin = path.join(__dirname, '..', '..', '..', 'bin', 'thinsim.js');
  const child = spawn(process.execPath, [bin, 'serve', pool, '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 30_000);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => { if (c.includes('nbd+unix://')) { clearTimeout(timer); resolve(); } });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`serve exited ${code}: ${err}`)); });
  });
  return {
    child,
    stop: () => new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill('SIGTERM');
    }),
  };
}

