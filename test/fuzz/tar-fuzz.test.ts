/**
 * Random layer tars through applyLayer onto a sandboxed directory (fast-check, fixed seeds;
 * THINSIM_FUZZ_SEED overrides, THINSIM_FUZZ_RUNS scales the run counts):
 * - hostile archives: members packed by tar-stream with names and link targets made of
 *   `..`, `.`, empty and whiteout components, absolute paths into the sandbox's outside
 *   directory, every entry type, odd ids and device numbers, extended attributes (PAX);
 *   mixed with raw headers whose fields are random bytes (a valid checksum, so the parser
 *   reads them) and random bodies; then the end blocks, or a cut at a random offset. The
 *   apply ends in a result or a ThinError E_INVALID / E_PARSE, within 20 s, and nothing
 *   outside the root changes;
 * - archives cut at a random offset: E_PARSE unless the cut leaves whole blocks, one end
 *   block at least;
 * - well-formed archives of unique paths (directories, files, symlinks and hard links
 *   inside the root): the tree equals GNU tar's extraction of the same archive (types,
 *   modes, owners, contents, link targets, hard link groups).
 * Regression cases found by this fuzzer are in test/layers/apply-hostile.test.ts (sizes
 * that are NaN or negative, which left tar-stream waiting forever; an empty layer; a
 * directory replaced by a later file, whose time-setting failed with a raw ENOTDIR).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import type * as tar from 'tar-stream';
import { applyLayer } from '../../src/layers/apply';
import { isThinError } from '../../src/errors';
import { EOF_BLOCKS, body, listAll, outsideState, packTar, rawHeader, sandbox, type PackEntry, type RawFields } from './tar-archives';

const SEED = Number(process.env.THINSIM_FUZZ_SEED ?? 1818);
const RUNS = Number(process.env.THINSIM_FUZZ_RUNS ?? 1);
const isRoot = process.getuid?.() === 0;

let tmp: string;
let n = 0;

function layerFile(buf: Buffer): string {
  const f = path.join(tmp, `l${n++}.tar`);
  fs.writeFileSync(f, buf);
  return f;
}

/** applyLayer, or a rejection after `ms` naming a hang. */
function applyWithin(file: string, root: string, ms = 20_000) {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`apply of ${file} did not finish in ${ms} ms (a hang)`)), ms); });
  return Promise.race([applyLayer({ file }, root), hang]).finally(() => clearTimeout(timer));
}

/** One member as bytes: packed alone by tar-stream, its end blocks cut off. */
async function member(e: PackEntry): Promise<Buffer | undefined> {
  try {
    const b = await packTar([e]);
    return b.subarray(0, b.length - 1024);
  } catch {
    return undefined; // the packer refuses some headers (e.g. numbers too large for its fields): not a case
  }
}

const component = fc.constantFrom('a', 'b', 'c', '..', '.', '', '.wh.a', '.wh..wh..opq', '.wh.', 'dev', 'x'.repeat(120));
const relPath = fc.array(component, { minLength: 1, maxLength: 5 }).map((p) => p.join('/'));

function hostileEntry(outside: string): fc.Arbitrary<PackEntry> {
  const name = fc.oneof(relPath, relPath.map((p) => '/' + p), relPath.map((p) => './' + p));
  const link = fc.oneof(relPath, relPath.map((p) => '/' + p), fc.constantFrom('/', outside, `${outside}/victim`, `${outside}/../outside/victim`, ''));
  const type = fc.constantFrom<tar.Headers['type']>('file', 'directory', 'symlink', 'link', 'character-device', 'block-device', 'fifo', 'contiguous-file');
  const id = fc.oneof(fc.nat(70000), fc.constantFrom(2 ** 32 - 1, 2 ** 21 - 1));
  const xattrs = fc.option(fc.dictionary(fc.constantFrom('user.a', 'user.b', 'bogus.x', 'trusted.t', '', 'user.' + 'n'.repeat(260)).map((k) => `SCHILY.xattr.${k}`), fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined, freq: 4 });
  return fc.record({ name, link, type, data: fc.string({ maxLength: 40 }), mode: fc.nat(0o7777), uid: id, gid: id, major: fc.nat(5000), minor: fc.nat(300), pax: xattrs })
    .map((r) => ({
      h: { name: r.name, type: r.type, linkname: r.type === 'symlink' || r.type === 'link' ? r.link : undefined, mode: r.mode, uid: r.uid, gid: r.gid, devmajor: r.major, devminor: r.minor, ...(r.pax ? { pax: r.pax } : {}) },
      body: r.type === 'file' || r.type === 'contiguous-file' ? r.data : undefined,
    }));
}

/** A raw header: every numeric field random text (octal digits, spaces, NULs, junk) or base-256 bytes. */
const numeric = (len: number) => fc.oneof(
  fc.stringMatching(new RegExp(`^[0-7]{1,${len - 1}}$`)),
  fc.string({ unit: fc.constantFrom('0', '7', '8', ' ', '\0', 'z', '-'), maxLength: len }),
  fc.uint8Array({ minLength: len, maxLength: len }).map((b) => { const x = Buffer.from(b); x[0] = x[len - 1] & 1 ? 0x80 : 0xff; return x.toString('latin1'); }),
);
const rawMember: fc.Arbitrary<Buffer> = fc.record({
  name: fc.oneof(relPath, fc.string({ maxLength: 99 })), mode: numeric(8), uid: numeric(8), gid: numeric(8), size: numeric(12), mtime: numeric(12),
  typeflag: fc.constantFrom('0', '1', '2', '3', '4', '5', '6', '7', 'x', 'g', 'L', 'K', 'S', 'V', 'D', '\0', 'Z'),
  linkname: fc.option(relPath, { nil: undefined }), devmajor: numeric(8), devminor: numeric(8), body: fc.uint8Array({ maxLength: 1200 }),
}).map((r) => {
  const fields: RawFields = { ...r };
  return Buffer.concat([rawHeader(fields), body(Buffer.from(r.body))]);
});

describe('apply fuzz: random tars onto a sandboxed directory', { skip: isRoot ? false : 'needs root (owners, device nodes)' }, () => {
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-tar-fuzz-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('hostile archives: a result or E_INVALID/E_PARSE, in time, and nothing outside the root changes', async () => {
    const codes: Record<string, number> = {};
    const box = path.join(tmp, 'box');
    const piece = fc.oneof({ weight: 3, arbitrary: hostileEntry(path.join(box, 'outside')) }, { weight: 1, arbitrary: rawMember });
    await fc.assert(fc.asyncProperty(
      fc.array(piece, { minLength: 1, maxLength: 8 }),
      fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined, freq: 3 }),
      async (pieces, cutAt) => {
        const s = sandbox(tmp, 'box', true);
        const parts: Buffer[] = [];
        for (const p of pieces) {
          const b = Buffer.isBuffer(p) ? p : await member(p);
          if (b) parts.push(b);
        }
        let archive = Buffer.concat([...parts, EOF_BLOCKS]);
        if (cutAt !== undefined) archive = archive.subarray(0, Math.floor(cutAt * archive.length));
        const before = outsideState(s);
        try {
          await applyWithin(layerFile(archive), s.root);
          codes.ok = (codes.ok ?? 0) + 1;
        } catch (e) {
          if (!isThinError(e, 'E_INVALID') && !isThinError(e, 'E_PARSE')) {
            throw new Error(`expected a result, E_INVALID or E_PARSE; got ${(e as { code?: string }).code ?? ''} ${(e as Error)?.stack ?? String(e)}`);
          }
          codes[(e as { code: string }).code] = (codes[(e as { code: string }).code] ?? 0) + 1;
        }
        assert.equal(outsideState(s), before, 'nothing outside the root changed');
      },
    ), { seed: SEED, numRuns: 250 * RUNS, includeErrorInReport: true });
    // The generator must reach every outcome, or the property proves little.
    for (const c of ['ok', 'E_INVALID', 'E_PARSE']) assert.ok((codes[c] ?? 0) > 5, `outcomes: ${JSON.stringify(codes)}`);
  });

  it('an archive cut at a random offset is E_PARSE unless whole blocks with an end block are left; nothing outside changes', async () => {
    const s0 = sandbox(tmp, 'cut-src');
    const whole = await packTar([
      { h: { name: 'd', type: 'directory', mode: 0o755 } },
      { h: { name: 'd/f', type: 'file', mode: 0o644 }, body: 'f'.repeat(3000) },
      { h: { name: 'd/' + 'long'.repeat(40), type: 'file', mode: 0o644 }, body: 'pax-named' },
      { h: { name: 'l', type: 'symlink', linkname: s0.outside } },
      { h: { name: 'l/victim', type: 'file', mode: 0o644 }, body: 'through l' },
    ]);
    const members = whole.length - 1024;
    await fc.assert(fc.asyncProperty(fc.nat(whole.length), async (cut) => {
      const s = sandbox(tmp, 'cut');
      const before = outsideState(s);
      const p = applyWithin(layerFile(whole.subarray(0, cut)), s.root);
      if (cut >= members + 512 && cut % 512 === 0) await p; // whole blocks, at least one end block
      else await assert.rejects(p, (e) => isThinError(e, 'E_PARSE') && /truncated tar/.test((e as Error).message));
      assert.equal(outsideState(s), before);
      fs.rmSync(s.dir, { recursive: true, force: true });
    }), { seed: SEED, numRuns: 150 * RUNS, includeErrorInReport: true, examples: [[0], [members], [members + 511], [members + 512]] });
  });

  it('well-formed archives of unique paths give GNU tar\'s tree', { skip: spawnSync('tar', ['--version']).status === 0 ? false : 'GNU tar missing' }, async () => {
    const node = fc.record({
      kind: fc.constantFrom('dir', 'file', 'file', 'symlink', 'link'),
      mode: fc.constantFrom(0o755, 0o644, 0o600, 0o4755, 0o1777, 0o640),
      uid: fc.constantFrom(0, 1, 1000, 65534), gid: fc.constantFrom(0, 5, 100),
      data: fc.string({ maxLength: 2000 }), pick: fc.nat(),
    });
    await fc.assert(fc.asyncProperty(fc.array(node, { minLength: 1, maxLength: 25 }), async (nodes) => {
      const dirs: string[] = [];
      const files: string[] = [];
      const entries: PackEntry[] = [];
      for (const [i, x] of nodes.entries()) {
        const parent = dirs.length && x.pick % 3 ? dirs[x.pick % dirs.length] : '';
        const name = path.posix.join(parent, `n${i}`);
        const base = { uid: x.uid, gid: x.gid, mtime: new Date(1_700_000_000_000) };
        if (x.kind === 'dir') { dirs.push(name); entries.push({ h: { ...base, name, type: 'directory', mode: x.mode } }); }
        else if (x.kind === 'file' || files.length === 0) { files.push(name); entries.push({ h: { ...base, name, type: 'file', mode: x.mode }, body: x.data }); }
        else {
          const to = files[x.pick % files.length];
          const rel = path.posix.relative(path.posix.dirname(name), to);
          entries.push({ h: { ...base, name, type: x.kind === 'link' ? 'link' : 'symlink', linkname: x.kind === 'link' ? to : rel, mode: 0o777 } });
        }
      }
      const file = layerFile(await packTar(entries));
      const ours = fs.mkdtempSync(path.join(tmp, 'ours-'));
      const gnu = fs.mkdtempSync(path.join(tmp, 'gnu-'));
      await applyWithin(file, ours);
      const r = spawnSync('tar', ['-xpf', file, '--numeric-owner', '-C', gnu], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(describeTree(ours), describeTree(gnu));
      fs.rmSync(ours, { recursive: true, force: true });
      fs.rmSync(gnu, { recursive: true, force: true });
    }), { seed: SEED, numRuns: 40 * RUNS, includeErrorInReport: true });
  });
});

/** Every entry: type, mode, owner, size, content hash, link target, and its hard link group. */
function describeTree(root: string): string[] {
  const inodes = new Map<number, string>();
  return listAll(root).map((rel) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'o';
    const what = type === 'f' ? createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16) : type === 'l' ? fs.readlinkSync(p) : '';
    let group = '';
    if (type === 'f') { group = inodes.get(st.ino) ?? rel; inodes.set(st.ino, group); }
    return `${rel} ${type} ${type === 'l' ? '' : (st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${type === 'f' ? st.size : ''} ${what} ${group}`;
  });
}
