/**
 * Apply one image layer (a tar, plain or gzip) onto a directory: the mounted snapshot of
 * the layer below, as Docker's devicemapper driver does in ApplyDiff.
 *
 * Contract:
 * - Streams: the layer is read once, in order, never held in memory; the DiffID (sha256 of
 *   the uncompressed tar) and the blob digest (sha256 of the bytes as stored) are computed
 *   on the way through. A blob whose digest differs from `expectBlobDigest` is an error.
 * - Whiteouts (OCI image-spec layer.md / Docker's aufs-style markers): `.wh.NAME` removes
 *   NAME from the lower layers and is not itself created; `.wh..wh..opq` makes its
 *   directory opaque: everything the lower layers had there goes, this layer's entries
 *   stay whatever order the tar lists them in. Other `.wh..wh.*` entries (aufs metadata)
 *   are skipped.
 * - Kept: mode (with setuid/setgid/sticky), uid/gid (when root), mtime, symlinks, hard
 *   links, device nodes and fifos (device nodes need root: without it they are skipped and
 *   each one is reported in `warnings`; a node is made, never opened). Extended attributes
 *   (PAX SCHILY.xattr.*) are set with setfattr, at most MAX_XATTRS per entry; binary values
 *   are skipped and reported.
 * - Path safety, as moby's pkg/archive (memberPath and checkSymlink cite it): an entry name
 *   that climbs out of the root (`..`), a hard link target outside it, or a relative symlink
 *   target that climbs out is refused with E_INVALID before anything is written for it.
 *   Absolute names, hard link targets and symlinks already in the tree are resolved inside
 *   the root only (chroot semantics, as Docker's chrooted applier), so a lower layer's
 *   `etc -> /` or a symlink to a host path can never make a write land outside `root`.
 * - Bad input is E_INVALID or E_PARSE naming the layer, never E_IO: names with a NUL or past
 *   PATH_MAX/NAME_MAX, ids past 2^32-2, device numbers past Linux's, times that are not
 *   times; and the tar-level limits of tar-guard.ts (metadata headers of at most 1 MiB,
 *   sizes that are byte counts, an end-of-archive block: a truncated layer is E_PARSE).
 * - `whiteouts: 'overlay'` targets an empty directory of its own (an overlay2 `diff/`)
 *   instead of the tree below: whiteouts are stored as the kernel's overlayfs reads them,
 *   as Docker's overlay2 driver does (archive.OverlayWhiteoutFormat): `.wh.NAME` becomes
 *   a character device 0/0 named NAME, `.wh..wh..opq` the xattr trusted.overlay.opaque=y
 *   on its directory (setfattr). Both need root.
 * - A failure leaves the directory partly applied: the caller owns it and throws it away
 *   (LayerStore.remove of the active layer).
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { ThinError, ioError } from '../errors';
import { runToolSync } from '../tools';
import { resolveInRoot } from './root-path';
import { TarGuard, TarGuardError } from './tar-guard';

/** Run a program synchronously (this code runs in the tree worker, whose event loop serves nothing else). */
function runSync(cmd: string, args: string[], what: string, rel: string): void {
  const r = runToolSync(cmd, args, 60_000);
  if (r.status !== 0) throw new ThinError('E_IO', `${what} failed: ${r.stderr.trim() || `exit ${r.status}`}`, { path: rel });
}

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/** Where a layer's bytes are: a whole file, or a byte range of one (a member of an archive). */
export interface LayerSource {
  file: string;
  start?: number;
  /** Bytes from `start`; the rest of the file when absent. */
  length?: number;
}

export interface ApplyOptions {
  /** sha256:<hex> the stored bytes must hash to (an OCI descriptor's digest). */
  expectBlobDigest?: string;
  /** Called with the count of stored (possibly compressed) bytes read so far, and of files applied. */
  onProgress?: (blobBytesRead: number, files: number) => void;
  /** 'apply' (default): whiteouts delete from the tree below. 'overlay': stored as overlayfs whiteouts (see the contract). */
  whiteouts?: 'apply' | 'overlay';
}

export interface ApplyResult {
  /** sha256:<hex> of the uncompressed tar stream. */
  diffId: string;
  /** sha256:<hex> of the bytes as stored. */
  blobDigest: string;
  compression: 'none' | 'gzip';
  /** Uncompressed tar bytes. */
  tarBytes: number;
  blobBytes: number;
  entries: number;
  files: number;
  /** Bytes of regular files written (Docker's layer size). */
  fileBytes: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  specials: number;
  whiteouts: number;
  opaqueDirs: number;
  warnings: string[];
}

/** A Transform that hashes and counts what passes through it. */
class Tap extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) { super(); }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
}

async function sniff(src: LayerSource): Promise<'none' | 'gzip'> {
  const fh = await fsp.open(src.file, 'r').catch((e) => { throw ioError('open layer', src.file, e); });
  try {
    const b = Buffer.alloc(6);
    const { bytesRead } = await fh.read(b, 0, Math.min(6, src.length ?? 6), src.start ?? 0);
    const m = b.subarray(0, bytesRead);
    if (m[0] === 0x1f && m[1] === 0x8b) return 'gzip';
    if (bytesRead < 4) return 'none'; // too short for any magic: the tar reader says what is wrong
    const kind = m.readUInt32BE(0) === 0x28b52ffd ? 'zstd' : m.subarray(0, 3).toString('latin1') === 'BZh' ? 'bzip2'
      : m.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ? 'xz' : undefined;
    if (kind) throw new ThinError('E_UNSUPPORTED', `layer ${src.file} is ${kind}-compressed; thinsim applies plain and gzip tars only`, { file: src.file, kind });
    return 'none';
  } finally { await fh.close(); }
}

/** Copy an entry's body into a new file with synchronous writes (this runs in the tree worker, see the contract). */
async function writeBody(body: Readable, target: string): Promise<void> {
  const fd = fs.openSync(target, 'wx', 0o600);
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
    }
  } finally { fs.closeSync(fd); }
}

/** Linux's PATH_MAX and NAME_MAX: a name beyond them could not be made, so it is bad input. */
const PATH_MAX = 4096;
const NAME_MAX = 255;
/** Extended attributes one entry may carry (thinsim's cap: each costs a setfattr run). */
export const MAX_XATTRS = 128;

/** Refuse a name (or link target) no file system could hold: a NUL, or longer than PATH_MAX / NAME_MAX. */
function checkName(name: string, what: string, entry: string): void {
  if (name.includes('\0')) throw unsafe(entry, `has a NUL byte in its ${what}`);
  const bytes = Buffer.byteLength(name);
  if (bytes >= PATH_MAX) throw unsafe(entry, `has a ${what} of ${bytes} bytes; Linux allows at most ${PATH_MAX - 1}`);
  const long = name.split('/').find((p) => Buffer.byteLength(p) > NAME_MAX);
  if (long !== undefined) throw unsafe(entry, `has a ${what} component of ${Buffer.byteLength(long)} bytes; Linux allows at most ${NAME_MAX}`);
}

/**
 * Normalise a tar member name (or, `kind` 'hardlink', a hard link's target) to a
 * root-relative POSIX path ('' is the root); refuse one that climbs out of the root.
 *
 * moby's pkg/archive is the reference (diff.go UnpackLayer, archive.go createTarFile):
 * - an entry name goes through filepath.Clean, then is refused ("%q is outside of %q")
 *   when filepath.Rel(dest, filepath.Join(dest, name)) starts with "../". Clean keeps the
 *   leading ".." of a relative name but drops ".." at the root of an absolute one, so
 *   "/../x" is "/x" (accepted) while "../x" and "a/../../x" are refused;
 * - a hard link's target is filepath.Join(extractDir, linkname), refused ("invalid
 *   hardlink") when outside extractDir. No Clean comes first, so an absolute "/../x"
 *   climbs out too, and an absolute "/etc/passwd" is the root's etc/passwd, not the host's.
 * thinsim also refuses a name that is ".." itself, which moby's "../" prefix test lets
 * through (harmless there only because its applier runs chrooted).
 */
export function memberPath(name: string, kind: 'entry' | 'hardlink' = 'entry', entry = name): string {
  checkName(name, kind === 'entry' ? 'name' : 'hard link target', entry);
  const rooted = kind === 'entry' && name.startsWith('/');
  const out: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p !== '..') out.push(p);
    else if (out.length) out.pop();
    else if (!rooted) throw unsafe(entry, kind === 'entry' ? 'climbs out of the layer root' : `is a hard link to "${name.slice(0, 200)}", outside the layer root`);
  }
  return out.join('/');
}

/**
 * Refuse a symlink whose relative target, read from the link's own directory, climbs out
 * of the root. moby (archive.go createTarFile, TypeSymlink) refuses ("invalid symlink")
 * when filepath.Join(filepath.Dir(path), linkname) is not under extractDir; an absolute
 * target joins under the link's directory there, so it is accepted and left to resolve
 * inside the root (the chrooted applier). thinsim is stricter in one way: a target that
 * climbs above the root and comes back ("../<root's own name>/x") is refused, since where
 * it lands would depend on the host path of the root.
 */
function checkSymlink(entry: string, parentRel: string, to: string): void {
  if (to === '') throw unsafe(entry, 'is a symlink with an empty target');
  checkName(to, 'symlink target', entry);
  if (to.startsWith('/')) return;
  let depth = parentRel ? parentRel.split('/').length : 0;
  for (const p of to.split('/')) {
    if (p === '..') depth--;
    else if (p && p !== '.') depth++;
    if (depth < 0) throw unsafe(entry, `is a symlink to "${to.slice(0, 200)}", outside the layer root`);
  }
}

function unsafe(name: string, why: string): ThinError {
  return new ThinError('E_INVALID', `refusing tar entry "${name.replace(/\0/g, '\\0').slice(0, 300)}": it ${why}`, { kind: 'unsafe_path', path: name.slice(0, 4096) });
}

/** lstat, or null when nothing is there (also when a component on the way is not a directory). */
function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw e;
  }
}

/**
 * The applier: one instance per layer, holding the set of paths this layer created (for
 * opaque directories) and the directories whose times are set last.
 */
class Applier {
  readonly unpacked = new Set<string>();
  readonly dirTimes: Array<[string, Date]> = [];
  readonly resolved = new Map<string, string>();
  readonly isRoot = process.getuid?.() === 0;
  readonly r: Omit<ApplyResult, 'diffId' | 'blobDigest' | 'compression' | 'tarBytes' | 'blobBytes'> = {
    entries: 0, files: 0, fileBytes: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, whiteouts: 0, opaqueDirs: 0, warnings: [],
  };
  private xattrsLost = 0;
  constructor(readonly root: string, readonly overlay = false) {}

  /** The host path of directory `rel`, following symlinks inside the root only; missing directories are made (0755). */
  dir(rel: string): string {
    const hit = this.resolved.get(rel);
    if (hit !== undefined) return hit;
    const out = resolveInRoot(this.root, rel, true, { make: true, what: 'apply' });
    this.resolved.set(rel, out);
    return out;
  }

  private clear(host: string, keepDir: boolean): void {
    const st = lstatOrNull(host);
    if (!st) return;
    if (st.isDirectory()) {
      if (keepDir) return;
      fs.rmSync(host, { recursive: true, force: true });
      this.resolved.clear();
    } else {
      fs.unlinkSync(host);
      if (st.isSymbolicLink()) this.resolved.clear();
    }
  }

  /** Remove from `host` (recursively) everything this layer did not create. */
  private opaque(host: string): void {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(host, { withFileTypes: true });
    } catch (e) {
      // A directory that cannot be listed cannot be made opaque: applying on would leave
      // the lower layers' entries visible, so this is an error, never an empty directory.
      throw ioError('list the opaque directory', host, e);
    }
    for (const e of entries) {
      const p = path.join(host, e.name);
      if (!this.unpacked.has(p)) fs.rmSync(p, { recursive: true, force: true });
      else if (e.isDirectory()) this.opaque(p);
    }
    this.resolved.clear();
  }

  private meta(p: string, h: tar.Headers, link = false): void {
    // Values no file can take are bad input (Node would throw a RangeError, seen as E_IO).
    for (const [what, id] of [['uid', h.uid], ['gid', h.gid]] as const) {
      if (id !== undefined && !(Number.isSafeInteger(id) && id >= 0 && id < 2 ** 32 - 1)) throw new ThinError('E_INVALID', `tar entry "${h.name.slice(0, 300)}" has ${what} ${id}; Linux ids are 0 to ${2 ** 32 - 2}`, { path: h.name.slice(0, 4096) });
    }
    if (h.mtime !== undefined && !Number.isFinite(h.mtime.getTime())) throw new ThinError('E_INVALID', `tar entry "${h.name.slice(0, 300)}" has an mtime that is not a time`, { path: h.name.slice(0, 4096) });
    if (this.isRoot) (link ? fs.lchownSync : fs.chownSync)(p, h.uid ?? 0, h.gid ?? 0);
    if (!link) fs.chmodSync(p, (h.mode ?? 0o644) & 0o7777); // after chown, which clears setuid
    const t = h.mtime ?? new Date(0);
    (link ? fs.lutimesSync : fs.utimesSync)(p, t, t);
  }

  /**
   * The entry's extended attributes (PAX SCHILY.xattr.*), set with setfattr. tar-stream
   * decodes PAX values as UTF-8, so a binary value (security.capability) cannot be
   * recovered exactly: such values are skipped and counted in the warnings.
   */
  private xattr(target: string, h: tar.Headers): void {
    const pax = (h as { pax?: Record<string, string> }).pax;
    if (!pax) return;
    const n = Object.keys(pax).filter((k) => k.startsWith('SCHILY.xattr.')).length;
    if (n > MAX_XATTRS) throw new ThinError('E_INVALID', `tar entry "${h.name.slice(0, 300)}" has ${n} extended attributes; thinsim applies at most ${MAX_XATTRS} per file`, { path: h.name.slice(0, 4096) });
    for (const [k, v] of Object.entries(pax)) {
      if (!k.startsWith('SCHILY.xattr.')) continue;
      if (v.includes('\ufffd')) { this.xattrsLost++; continue; }
      const name = k.slice('SCHILY.xattr.'.length);
      // Linux's XATTR_NAME_MAX and XATTR_SIZE_MAX: beyond them no file system takes it.
      if (name === '' || name.includes('\0') || Buffer.byteLength(name) > 255 || Buffer.byteLength(v) > 65536) {
        throw new ThinError('E_INVALID', `tar entry "${h.name.slice(0, 300)}" has extended attribute ${JSON.stringify(name.slice(0, 80))} with a name (${Buffer.byteLength(name)} bytes) or value (${Buffer.byteLength(v)} bytes) Linux cannot hold`, { path: h.name.slice(0, 4096) });
      }
      const r = runToolSync('setfattr', ['-h', '-n', name, '-v', '0s' + Buffer.from(v, 'utf8').toString('base64'), target], 60_000);
      if (r.status === 0) continue;
      // As moby's createTarFile: ENOTSUP and EPERM (a namespace the file system or the
      // caller may not set) are reported and skipped; anything else fails the apply. (Told
      // apart by setfattr's message: under a translated locale these fail as E_IO.)
      if (/Operation not (supported|permitted)/.test(r.stderr)) this.r.warnings.push(`extended attribute ${name.slice(0, 80)} on ${h.name.slice(0, 200)} not applied: ${r.stderr.trim().split(': ').at(-1)}`);
      else throw new ThinError('E_IO', `setfattr ${name.slice(0, 80)} on ${target} (the attr package is needed) failed: ${r.stderr.trim() || `exit ${r.status}`}`, { path: target });
    }
  }

  async entry(h: tar.Headers, body: Readable): Promise<void> {
    this.r.entries++;
    const rel = memberPath(h.name);
    const base = path.posix.basename(rel);
    const parentRel = rel.includes('/') ? path.posix.dirname(rel) : '';
    if (rel === '') { // the root itself: only its metadata
      if (h.type === 'directory') { this.meta(this.root, { ...h, mtime: undefined }); this.dirTimes.push([this.root, h.mtime ?? new Date(0)]); }
      return void body.resume();
    }
    const parent = this.dir(parentRel);
    if (base === WHITEOUT_OPAQUE) {
      body.resume();
      if (this.overlay) runSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', parent], `setfattr trusted.overlay.opaque on ${parent} (root and the attr package are needed)`, rel);
      else this.opaque(parent);
      this.r.opaqueDirs++;
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) return void body.resume();
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (!victim || victim === '.' || victim === '..') throw unsafe(h.name, 'names no file to white out');
      this.clear(path.join(parent, victim), false);
      if (this.overlay) {
        runSync('mknod', [path.join(parent, victim), 'c', '0', '0'], `mknod ${victim} c 0 0 (an overlay whiteout)`, rel);
        this.meta(path.join(parent, victim), { ...h, mode: 0 });
      }
      this.r.whiteouts++;
      return void body.resume();
    }
    const target = path.join(parent, base);
    this.unpacked.add(target);
    this.clear(target, h.type === 'directory');
    switch (h.type) {
      case 'directory':
        if (!lstatOrNull(target)) fs.mkdirSync(target, { mode: 0o700 });
        this.meta(target, { ...h, mtime: undefined });
        this.xattr(target, h);
        this.dirTimes.push([target, h.mtime ?? new Date(0)]);
        this.r.dirs++;
        return void body.resume();
      case 'file': case 'contiguous-file':
        await writeBody(body, target);
        this.meta(target, h);
        this.xattr(target, h);
        this.r.files++;
        this.r.fileBytes += h.size ?? 0;
        return;
      case 'symlink': {
        const to = h.linkname ?? '';
        checkSymlink(h.name, parentRel, to);
        fs.symlinkSync(to, target);
        this.meta(target, h, true);
        this.resolved.clear();
        this.r.symlinks++;
        return void body.resume();
      }
      case 'link': {
        const toRel = memberPath(h.linkname ?? '', 'hardlink', h.name);
        const src = path.join(this.dir(toRel.includes('/') ? path.posix.dirname(toRel) : ''), path.posix.basename(toRel));
        const st = lstatOrNull(src);
        if (!toRel || !st || st.isDirectory()) throw new ThinError('E_INVALID', `hard link "${h.name}" -> "${h.linkname}": the target is ${!st ? 'missing' : 'a directory'}`, { path: h.name });
        fs.linkSync(src, target);
        this.r.hardlinks++;
        return void body.resume();
      }
      case 'character-device': case 'block-device': case 'fifo': {
        body.resume();
        if (h.type !== 'fifo' && !this.isRoot) { this.r.warnings.push(`skipped device node ${rel}: making device nodes needs root`); return; }
        // Linux's dev_t: a 12-bit major and a 20-bit minor number.
        const [major, minor] = [h.devmajor ?? 0, h.devminor ?? 0];
        if (h.type !== 'fifo' && !(Number.isInteger(major) && major >= 0 && major < 4096 && Number.isInteger(minor) && minor >= 0 && minor < 2 ** 20)) {
          throw new ThinError('E_INVALID', `tar entry "${h.name.slice(0, 300)}" is device ${major}:${minor}; Linux device numbers are 0-4095:0-1048575`, { path: h.name.slice(0, 4096) });
        }
        const args = h.type === 'fifo' ? [target, 'p'] : [target, h.type === 'block-device' ? 'b' : 'c', String(h.devmajor ?? 0), String(h.devminor ?? 0)];
        runSync('mknod', args, `mknod ${args.join(' ')}`, rel);
        this.meta(target, h);
        this.r.specials++;
        return;
      }
      default:
        this.r.warnings.push(`skipped ${rel}: tar entry type ${h.type} is not applied`);
        return void body.resume();
    }
  }

  finish(): void {
    // After every entry (writing into a directory moves its time). The last entry for a
    // path wins; a directory a later entry replaced or removed has no time to set.
    for (const [p, t] of new Map(this.dirTimes)) if (lstatOrNull(p)?.isDirectory()) fs.utimesSync(p, t, t);
    if (this.xattrsLost) this.r.warnings.push(`${this.xattrsLost} extended attribute(s) with binary values not applied (the tar reader decodes them as text)`);
  }
}

/** Apply the layer at `src` onto the directory `root` (the mounted snapshot of the layer below). */
export async function applyLayer(src: LayerSource, root: string, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const compression = await sniff(src);
  const start = src.start ?? 0;
  const input = fs.createReadStream(src.file, { start, end: src.length === undefined ? undefined : start + src.length - 1, highWaterMark: 1 << 20 });
  const applier = new Applier(root, opts.whiteouts === 'overlay');
  const onProgress = opts.onProgress;
  const blobTap = new Tap(onProgress && ((n) => onProgress(n, applier.r.files)));
  // A plain tar's DiffID is its blob digest: hash those bytes once.
  const tarTap = compression === 'gzip' ? new Tap() : undefined;
  const extract = tar.extract();
  // Which stage failed decides the error: the tar parser or gunzip (bad input: E_PARSE,
  // naming the layer) or the file and the tree (E_IO).
  // The guard's limits (tar-guard.ts) come first: a failure there is the cause, and
  // tar-stream's own error is only the echo of its input being cut.
  let badInput: { what: string; err: Error } | undefined;
  let guardErr: TarGuardError | undefined;
  const gunzip = compression === 'gzip' ? createGunzip() : undefined;
  const guard = new TarGuard();
  gunzip?.on('error', (err) => { badInput ??= { what: 'gzip stream', err }; });
  guard.on('error', (err) => { if (err instanceof TarGuardError) guardErr ??= err; });
  extract.on('error', (err: Error) => { badInput ??= { what: 'tar', err }; });
  const feed = pipeline(input, blobTap, ...(gunzip && tarTap ? [gunzip, tarTap] : []), guard, extract as unknown as NodeJS.WritableStream);
  feed.catch(() => undefined); // reported below, after the entries
  try {
    for await (const e of extract) await applier.entry(e.header, e as unknown as Readable);
    await feed;
    applier.finish();
  } catch (e) {
    input.destroy();
    await feed.catch(() => undefined);
    if (e instanceof ThinError) throw e;
    const where = src.start !== undefined ? ` (bytes ${src.start}-${src.start + (src.length ?? 0)} of the archive)` : '';
    if (badInput?.what === 'gzip stream') guardErr = undefined; // a cut gzip stream is the cause
    if (guardErr) {
      throw new ThinError('E_PARSE', `layer ${src.file}${where} ${guardErr.message}${guardErr.kind === 'truncated' ? '; copy or download it again' : ''}`, { file: src.file, kind: guardErr.kind === 'truncated' ? 'truncated' : 'bad_layer_tar', offset: guardErr.offset }, { cause: e });
    }
    if (badInput) {
      throw new ThinError('E_PARSE', `layer ${src.file}${where} is not a valid ${badInput.what === 'tar' && compression === 'gzip' ? 'gzip-compressed tar' : badInput.what}: ${badInput.err.message}; the archive may be truncated or damaged`, { file: src.file, kind: 'bad_layer_tar' }, { cause: e });
    }
    throw ioError('apply layer onto', root, e);
  }
  const blobDigest = 'sha256:' + blobTap.hash.digest('hex');
  if (opts.expectBlobDigest && opts.expectBlobDigest !== blobDigest) {
    throw new ThinError('E_CORRUPT', `layer blob ${src.file} hashes to ${blobDigest}, but its descriptor says ${opts.expectBlobDigest}`, { kind: 'blob_digest_mismatch', file: src.file });
  }
  const diffId = tarTap ? 'sha256:' + tarTap.hash.digest('hex') : blobDigest;
  return { diffId, blobDigest, compression, tarBytes: tarTap ? tarTap.bytes : blobTap.bytes, blobBytes: blobTap.bytes, ...applier.r };
}
