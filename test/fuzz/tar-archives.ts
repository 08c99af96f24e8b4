/**
 * Hostile tars for the apply tests: well-formed archives from tar-stream's packer, and raw
 * 512-byte headers with any field value (a valid checksum, so the parser looks past it),
 * and a sandbox to apply into: ROOT beside OUTSIDE, whose files must never change.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';

export interface PackEntry { h: tar.Headers; body?: Buffer | string }

/** A whole archive from tar-stream's packer (PAX headers for long names, as it writes them). */
export function packTar(entries: PackEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  for (const e of entries) pack.entry({ mtime: new Date(0), ...e.h }, e.body ?? '');
  pack.finalize();
  return done;
}

/** Raw header fields: strings are written as bytes at their offset (the rest of the field stays NUL). */
export interface RawFields {
  name?: string;
  mode?: string;
  uid?: string;
  gid?: string;
  /** The 12-byte size field as text ("00000001000"), or bytes (base-256). */
  size?: string | Buffer;
  mtime?: string;
  typeflag?: string;
  linkname?: string;
  devmajor?: string;
  devminor?: string;
}

/** One 512-byte ustar header with exactly these field bytes and a valid checksum. */
export function rawHeader(f: RawFields): Buffer {
  const b = Buffer.alloc(512);
  const put = (v: string | Buffer | undefined, off: number, len: number) => {
    if (v === undefined) return;
    const bytes = typeof v === 'string' ? Buffer.from(v, 'latin1') : v;
    bytes.copy(b, off, 0, Math.min(len, bytes.length));
  };
  put(f.name ?? 'x', 0, 100);
  put(f.mode ?? '0000644', 100, 8);
  put(f.uid ?? '0000000', 108, 8);
  put(f.gid ?? '0000000', 116, 8);
  put(f.size ?? '00000000000', 124, 12);
  put(f.mtime ?? '00000000000', 136, 12);
  put(f.typeflag ?? '0', 156, 1);
  put(f.linkname, 157, 100);
  put('ustar\x0000', 257, 8);
  put(f.devmajor ?? '0000000', 329, 8);
  put(f.devminor ?? '0000000', 337, 8);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return b;
}

/** A member's body padded to whole blocks. */
export function body(data: Buffer | string): Buffer {
  const d = Buffer.from(data);
  return Buffer.concat([d, Buffer.alloc((512 - (d.length % 512)) % 512)]);
}

/** A PAX header member (typeflag x) carrying `records` for the member after it. */
export function paxHeader(records: Record<string, string>): Buffer {
  let text = '';
  for (const [k, v] of Object.entries(records)) {
    const rec = ` ${k}=${v}\n`;
    let n = Buffer.byteLength(rec) + 1;
    while (String(n).length + Buffer.byteLength(rec) !== n) n = String(n).length + Buffer.byteLength(rec);
    text += n + rec;
  }
  const data = Buffer.from(text);
  return Buffer.concat([rawHeader({ name: 'PaxHeader', typeflag: 'x', size: data.length.toString(8).padStart(11, '0') }), body(data)]);
}

/** The end-of-archive marker. */
export const EOF_BLOCKS = Buffer.alloc(1024);

/** The size field as base-256 bytes (GNU's form for sizes past 8 GiB); negative as two's complement. */
export function base256(n: bigint): Buffer {
  const b = Buffer.alloc(12);
  let v = n < 0n ? (1n << 88n) + n : n;
  for (let i = 11; i >= 1; i--) { b[i] = Number(v & 0xffn); v >>= 8n; }
  b[0] = n < 0n ? 0xff : 0x80;
  return b;
}

/** A sandbox: `root` to apply into and `outside` beside it with a sentinel file. */
export interface Sandbox { dir: string; root: string; outside: string; victim: string }

/** A new sandbox under `parent` (named `name-XXXXXX`; exactly `name`, made afresh, when `fixed`). */
export function sandbox(parent: string, name: string, fixed = false): Sandbox {
  const dir = path.join(parent, fixed ? name : '');
  if (fixed) { fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir); }
  else return sandboxAt(fs.mkdtempSync(path.join(parent, `${name}-`)));
  return sandboxAt(dir);
}

function sandboxAt(dir: string): Sandbox {
  const root = path.join(dir, 'root');
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(root);
  fs.mkdirSync(outside);
  const victim = path.join(outside, 'victim');
  fs.writeFileSync(victim, 'host file\n');
  return { dir, root, outside, victim };
}

/** Every path under `dir` (not following symlinks), relative, sorted. */
export function listAll(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out.push(path.relative(dir, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** What the sandbox outside `root` holds: names, and the sentinel's content and inode. */
export function outsideState(s: Sandbox): string {
  const names = listAll(s.dir).filter((p) => p !== 'root' && !p.startsWith('root/'));
  const st = fs.statSync(s.victim);
  return JSON.stringify({ names, victim: fs.readFileSync(s.victim, 'utf8'), ino: st.ino, nlink: st.nlink, mode: st.mode, mtime: st.mtimeMs });
}
