/**
 * Generate an image as a `docker save` archive, in Node, with tar-stream: for the demo,
 * the memory test and the import benchmark.
 *
 * Contract: every layer tar is streamed to a temporary file beside the archive (hashed on
 * the way: its DiffID), then the archive is packed from those files: manifest.json, the
 * config JSON (rootfs.diff_ids, history), and <diffid hex>/layer.tar members, as Docker
 * lays them out. Big files are produced in 1 MiB pieces, so memory stays flat whatever the
 * size. Whiteouts are written as the OCI layer spec names them (.wh.NAME, .wh..wh..opq).
 * The content of a file is a function of (seed, offset): reproducible, and never zeros.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { Mulberry32 } from '../random';

export type GenEntry =
  | { path: string; type: 'dir'; mode?: number }
  | { path: string; type: 'file'; content: string | { size: number; seed: number }; mode?: number; uid?: number; gid?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'hardlink'; target: string }
  /** .wh.NAME beside `path`: deletes `path` from the layers below. */
  | { path: string; type: 'whiteout' }
  /** .wh..wh..opq inside directory `path`. */
  | { path: string; type: 'opaque' };

export interface GenImage { repoTag: string; layers: GenEntry[][]; created?: string }
export interface GenResult { file: string; id: string; diffIds: string[]; tarBytes: number[] }

const MTIME = new Date('2024-01-01T00:00:00Z');

/** 1 MiB pieces: one pseudo-random block per seed (src/random.ts), each 4 KiB stamped with its offset (so no two blocks are alike). */
export function seededContent(size: number, seed: number): Readable {
  const block = Buffer.alloc(1 << 20);
  const r = new Mulberry32(seed);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE(r.int(2 ** 32), i);
  let off = 0;
  return new Readable({
    read() {
      if (off >= size) { this.push(null); return; }
      const n = Math.min(block.length, size - off);
      const b = Buffer.from(block.subarray(0, n));
      for (let i = 0; i + 8 <= n; i += 4096) b.writeDoubleLE(off + i, i);
      off += n;
      this.push(b);
    },
  });
}

function addEntry(pack: tar.Pack, e: GenEntry): Promise<void> {
  const base = { mtime: MTIME, uid: 0, gid: 0 };
  const dir = path.posix.dirname(e.path);
  const name = path.posix.basename(e.path);
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    switch (e.type) {
      case 'dir': pack.entry({ ...base, name: e.path + '/', type: 'directory', mode: e.mode ?? 0o755 }, done); return;
      case 'symlink': pack.entry({ ...base, name: e.path, type: 'symlink', linkname: e.target, mode: 0o777 }, done); return;
      case 'hardlink': pack.entry({ ...base, name: e.path, type: 'link', linkname: e.target, mode: 0o644 }, done); return;
      case 'whiteout': pack.entry({ ...base, name: path.posix.join(dir, `.wh.${name}`), type: 'file', mode: 0o600 }, '', done); return;
      case 'opaque': pack.entry({ ...base, name: path.posix.join(e.path, '.wh..wh..opq'), type: 'file', mode: 0o600 }, '', done); return;
      case 'file': {
        const h = { ...base, name: e.path, type: 'file' as const, mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0 };
        if (typeof e.content === 'string') { pack.entry(h, e.content, done); return; }
        const w = pack.entry({ ...h, size: e.content.size }, done);
        pipeline(seededContent(e.content.size, e.content.seed), w).catch(reject);
      }
    }
  });
}

/** Write one layer tar to `file`; its DiffID and length. */
async function writeLayer(file: string, entries: GenEntry[]): Promise<{ diffId: string; bytes: number }> {
  const pack = tar.pack();
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new PassThrough();
  tap.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; });
  const out = pipeline(pack as unknown as Readable, tap, fs.createWriteStream(file));
  for (const e of entries) await addEntry(pack, e);
  pack.finalize();
  await out;
  return { diffId: 'sha256:' + hash.digest('hex'), bytes };
}

/** Build `img` as a docker-save archive at `file`. */
export async function writeDockerArchive(file: string, img: GenImage): Promise<GenResult> {
  const tmp = fs.mkdtempSync(path.join(path.dirname(file), '.gen-'));
  try {
    const layers: Array<{ file: string; diffId: string; bytes: number }> = [];
    for (const [i, entries] of img.layers.entries()) {
      const f = path.join(tmp, `layer${i}.tar`);
      layers.push({ file: f, ...(await writeLayer(f, entries)) });
    }
    const created = img.created ?? MTIME.toISOString();
    const config = Buffer.from(JSON.stringify({
      architecture: 'amd64', os: 'linux', created,
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created, created_by: `thinsim image-gen layer ${i + 1}` })),
    }));
    const id = 'sha256:' + createHash('sha256').update(config).digest('hex');
    const manifest = JSON.stringify([{ Config: `${id.slice(7)}.json`, RepoTags: [img.repoTag], Layers: layers.map((l) => `${l.diffId.slice(7)}/layer.tar`) }]);
    const pack = tar.pack();
    const out = pipeline(pack as unknown as Readable, fs.createWriteStream(file));
    const put = (name: string, body: Buffer | string) => new Promise<void>((res, rej) => pack.entry({ name, mtime: MTIME, mode: 0o644 }, body, (e) => (e ? rej(e) : res())));
    for (const l of layers) {
      await new Promise<void>((res, rej) => pack.entry({ name: `${l.diffId.slice(7)}/`, type: 'directory', mtime: MTIME, mode: 0o755 }, (e) => (e ? rej(e) : res())));
      await new Promise<void>((res, rej) => {
        const w = pack.entry({ name: `${l.diffId.slice(7)}/layer.tar`, size: l.bytes, mtime: MTIME, mode: 0o644 }, (e) => (e ? rej(e) : res()));
        pipeline(fs.createReadStream(l.file), w).catch(rej);
      });
    }
    await put(`${id.slice(7)}.json`, config);
    await put('manifest.json', manifest);
    pack.finalize();
    await out;
    return { file, id, diffIds: layers.map((l) => l.diffId), tarBytes: layers.map((l) => l.bytes) };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
