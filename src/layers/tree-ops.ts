/**
 * What thinsim does inside a mounted layer, as synchronous functions for the tree worker
 * (tree-worker.ts): list, read, write at an offset, and Docker's init layer.
 *
 * Contract: every function takes the tree's root and a root-relative path that may not
 * climb out of it (E_INVALID); symlinks in the tree are resolved inside the root only, as
 * the container would see them (never a host file); missing files are E_NOT_FOUND. They block their thread on
 * every call, so they run only in the tree worker, a process that serves no mount; never
 * in the process whose NBD server backs the tree (that would deadlock).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinError, ioError } from '../errors';
import { lstatIn, resolveInRoot } from './root-path';

export interface LayerFileEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** The target, for symlinks. */
  link?: string;
}

/**
 * The host path of `rel` under `root`: a path that leaves the root as written is E_INVALID;
 * symlinks on the way are resolved inside the root only (resolveInRoot), so a layer's
 * `etc -> /` or a link to a host path never leads a read or a write out of the tree.
 */
export function inside(root: string, rel: string, followLast = true): string {
  if (rel.includes('\0')) throw new ThinError('E_INVALID', `path ${JSON.stringify(rel.slice(0, 200))} holds a NUL byte`, { path: rel.slice(0, 4096) });
  const full = path.resolve(root, '.' + path.posix.normalize('/' + rel));
  if (full !== root && !full.startsWith(root + '/')) throw new ThinError('E_INVALID', `path "${rel}" leaves the layer's root`, { path: rel });
  return resolveInRoot(root, path.relative(root, full), followLast);
}


function missing(e: unknown, rel: string): never {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') throw new ThinError('E_NOT_FOUND', `the layer has no file ${rel}; list them with thinsim layer files`, { path: rel });
  if (code === 'EISDIR') throw new ThinError('E_INVALID', `${rel} is a directory`, { path: rel });
  throw ioError('read', rel, e);
}

/** Every entry under the root (lost+found included), sorted by path, directories before their contents. */
export function listTree(root: string): LayerFileEntry[] {
  const out: LayerFileEntry[] = [];
  const walk = (dir: string) => {
    for (const n of fs.readdirSync(dir).sort()) {
      const full = path.join(dir, n);
      const st = fs.lstatSync(full);
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      out.push({
        path: '/' + path.relative(root, full), type, size: st.size, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid,
        ...(type === 'symlink' ? { link: fs.readlinkSync(full) } : {}),
      });
      if (type === 'dir') walk(full);
    }
  };
  walk(root);
  return out;
}

/** A file's bytes (all, or `length` from `offset`). */
export function readTreeFile(root: string, rel: string, offset = 0, length?: number): Buffer {
  const full = inside(root, rel);
  try {
    if (offset === 0 && length === undefined) return fs.readFileSync(full);
    const fd = fs.openSync(full, 'r');
    try {
      const n = length ?? Math.max(0, fs.fstatSync(fd).size - offset);
      const buf = Buffer.alloc(n);
      const got = fs.readSync(fd, buf, 0, n, offset);
      return buf.subarray(0, got);
    } finally { fs.closeSync(fd); }
  } catch (e) {
    return missing(e, rel);
  }
}

/** Read a whole file and throw the bytes away (to fill the page cache); returns the count. */
export function readTreeFileCount(root: string, rel: string): number {
  const full = inside(root, rel);
  let fd: number;
  try { fd = fs.openSync(full, 'r'); } catch (e) { return missing(e, rel); }
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let n = 0;
    for (;;) { const got = fs.readSync(fd, buf, 0, buf.length, null); if (!got) return n; n += got; }
  } catch (e) {
    throw ioError('read', rel, e);
  } finally { fs.closeSync(fd); }
}

/**
 * Write `data` into a file at `offset` (created 0644 when missing; `append` writes at its
 * end), then fsync it; returns the milliseconds the open, write and fsync took.
 */
export function writeTreeFile(root: string, rel: string, data: Uint8Array, opts: { offset?: number; append?: boolean } = {}): number {
  const t0 = performance.now();
  const full = inside(root, rel);
  let fd: number;
  try {
    fd = fs.openSync(full, opts.append ? 'a' : fs.existsSync(full) ? 'r+' : 'w', 0o644);
  } catch (e) {
    return missing(e, rel);
  }
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, opts.append ? null : (opts.offset ?? 0) + done);
    fs.fsyncSync(fd);
  } catch (e) {
    throw ioError('write', rel, e);
  } finally { fs.closeSync(fd); }
  return performance.now() - t0;
}

/** Docker's initlayer.Setup: make each path only when it does not exist; returns the paths made. */
export function setupInitLayer(root: string): string[] {
  const made: string[] = [];
  const entries: Array<[string, 'dir' | 'file' | 'link', string?]> = [
    ['/dev/pts', 'dir'], ['/dev/shm', 'dir'], ['/proc', 'dir'], ['/sys', 'dir'],
    ['/.dockerenv', 'file'], ['/etc/resolv.conf', 'file'], ['/etc/hosts', 'file'], ['/etc/hostname', 'file'],
    ['/dev/console', 'file'], ['/etc/mtab', 'link', '/proc/mounts'],
  ];
  for (const [p, kind, target] of entries) {
    const host = inside(root, p, false); // an image's `etc -> /` must not make these on the host
    if (lstatIn(host)) continue;
    fs.mkdirSync(path.dirname(host), { recursive: true, mode: 0o755 });
    if (kind === 'dir') fs.mkdirSync(host, { mode: 0o755 });
    else if (kind === 'file') fs.closeSync(fs.openSync(host, 'wx', 0o755));
    else fs.symlinkSync(target!, host);
    made.push(p);
  }
  return made;
}
