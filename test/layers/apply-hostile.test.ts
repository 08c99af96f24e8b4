/**
 * Hostile layer tars through applyLayer onto a plain directory (as root), one named case
 * each. Every case applies into a sandbox's `root` beside an `outside` directory holding
 * a sentinel file, and asserts that nothing outside `root` changed, whatever the outcome:
 *  - names with `..` (out: E_INVALID before anything is written; inside: fine), absolute
 *    names (into the root), NUL and over-long names (E_INVALID);
 *  - absolute symlinks and hard links pointing outside: resolved inside the root, as
 *    Docker's chrooted applier resolves them; a later entry written "through" such a
 *    symlink lands inside the root;
 *  - relative symlinks and hard link targets that climb out: refused (moby's pkg/archive
 *    rules; see memberPath and checkSymlink in src/layers/apply.ts);
 *  - device nodes: made as root with their numbers, skipped with a warning otherwise
 *    (a child process that drops to uid 65534), never opened (a fifo in the tree below is
 *    replaced, not written through);
 *  - huge headers: a PAX header of 64 MiB or claiming 2^40 bytes, a GNU long name of
 *    2 MiB (E_PARSE at the header, memory bounded), member sizes of 2^40 (truncated),
 *    negative or not numbers (E_PARSE: tar-stream alone waits forever on those).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { applyLayer, type ApplyResult } from '../../src/layers/apply';
import { MAX_TAR_META } from '../../src/layers/tar-guard';
import type * as tar from 'tar-stream';
import { isThinError } from '../../src/errors';
import { EOF_BLOCKS, base256, body, outsideState, packTar, paxHeader, rawHeader, sandbox, type PackEntry, type Sandbox } from '../fuzz/tar-archives';

const isRoot = process.getuid?.() === 0;
const MiB = 2 ** 20;

let tmp: string;
let n = 0;

/** Write `tar` to a file beside the sandboxes and apply it into `s.root`; the outside must not change. */
async function apply(s: Sandbox, tar: Buffer): Promise<ApplyResult> {
  const f = path.join(tmp, `layer-${n++}.tar`);
  fs.writeFileSync(f, tar);
  const before = outsideState(s);
  try {
    return await applyLayer({ file: f }, s.root);
  } finally {
    assert.equal(outsideState(s), before, 'nothing outside the root changed');
  }
}

async function refused(s: Sandbox, tar: Buffer, code: 'E_INVALID' | 'E_PARSE', re: RegExp): Promise<void> {
  await assert.rejects(apply(s, tar), (e) => {
    assert.ok(isThinError(e, code), `expected ${code}, got ${String(e)} ${(e as { code?: string }).code}`);
    assert.match((e as Error).message, re);
    return true;
  });
}

const file = (name: string, data = 'x'): PackEntry => ({ h: { name, type: 'file', mode: 0o644 }, body: data });
const pack = (...e: PackEntry[]) => packTar(e);
const box = (name: string) => sandbox(tmp, name);

describe('apply: hostile tars onto a directory', { skip: isRoot ? false : 'needs root (owners, device nodes)' }, () => {
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-apply-hostile-')); fs.chmodSync(tmp, 0o755); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('`..` that climbs out is refused before anything is written; `..` inside and absolute names stay in the root', async () => {
    for (const name of ['../escape', 'a/../../escape', './../escape', '..', 'a/b/../../../escape']) {
      const s = box('dotdot');
      await refused(s, await pack(file('first'), file(name)), 'E_INVALID', /climbs out of the layer root/);
      assert.deepEqual(fs.readdirSync(s.root), ['first'], `${name}: only the entry before it was written`);
    }
    const s = box('inside');
    const r = await apply(s, await pack(file('a/../b', 'b'), file('/abs/olute', 'abs'), file('/../rooted', 'clamped'), file('./c/./d', 'd')));
    assert.equal(r.files, 4);
    assert.equal(fs.readFileSync(path.join(s.root, 'b'), 'utf8'), 'b');
    assert.equal(fs.readFileSync(path.join(s.root, 'abs/olute'), 'utf8'), 'abs');
    // moby cleans an entry name first: "/../rooted" is "/rooted".
    assert.equal(fs.readFileSync(path.join(s.root, 'rooted'), 'utf8'), 'clamped');
    assert.equal(fs.readFileSync(path.join(s.root, 'c/d'), 'utf8'), 'd');
  });

  it('absolute symlinks pointing outside resolve inside the root; entries written through them land in the root', async () => {
    const s = box('abs-symlink');
    const r = await apply(s, await pack(
      { h: { name: 'out', type: 'symlink', linkname: s.outside } },
      { h: { name: 'victim-link', type: 'symlink', linkname: s.victim } },
      { h: { name: 'etc', type: 'symlink', linkname: '/' } },
      file('out/victim', 'written through out'),
      file('etc/through-etc', 'in root'),
      file('victim-link', 'replaces the link'),
    ));
    assert.equal(r.symlinks, 3);
    assert.equal(fs.readFileSync(path.join(s.root, s.outside, 'victim'), 'utf8'), 'written through out');
    assert.equal(fs.readFileSync(path.join(s.root, 'through-etc'), 'utf8'), 'in root');
    assert.equal(fs.lstatSync(path.join(s.root, 'victim-link')).isFile(), true, 'a file entry replaces the symlink, never writes through it');
    assert.equal(fs.readFileSync(s.victim, 'utf8'), 'host file\n');
  });

  it('absolute hard links resolve inside the root: to the root\'s copy, or refused when the root has none', async () => {
    const s = box('abs-hardlink');
    await refused(s, await pack({ h: { name: 'hl', type: 'link', linkname: s.victim } }), 'E_INVALID', /target is missing/);
    const r = await apply(s, await pack(
      file(`${s.outside}/victim`, 'root copy'),
      { h: { name: 'hl', type: 'link', linkname: s.victim } },
      { h: { name: 'sl', type: 'symlink', linkname: s.outside } },
      { h: { name: 'hl2', type: 'link', linkname: 'sl/victim' } }, // through a symlink: still the root's copy
    ));
    assert.equal(r.hardlinks, 2);
    const copy = fs.statSync(path.join(s.root, s.outside, 'victim'));
    for (const l of ['hl', 'hl2']) assert.equal(fs.statSync(path.join(s.root, l)).ino, copy.ino, l);
    assert.notEqual(copy.ino, fs.statSync(s.victim).ino);
  });

  it('relative symlinks and hard link targets that climb out are refused (moby pkg/archive); those that stay in are kept', async () => {
    const cases: Array<[PackEntry, RegExp]> = [
      [{ h: { name: 'l', type: 'symlink', linkname: '../outside/victim' } }, /symlink to "..\/outside\/victim", outside the layer root/],
      [{ h: { name: 'a/l', type: 'symlink', linkname: '../../x' } }, /outside the layer root/],
      [{ h: { name: 'a/l', type: 'symlink', linkname: 'b/../../../x' } }, /outside the layer root/],
      [{ h: { name: 'l', type: 'symlink', linkname: `../${path.basename(tmp)}/x` } }, /outside the layer root/], // climbs and comes back: refused too
      [{ h: { name: 'h', type: 'link', linkname: '../outside/victim' } }, /hard link to "..\/outside\/victim", outside the layer root/],
      [{ h: { name: 'h', type: 'link', linkname: '/../outside/victim' } }, /outside the layer root/], // no Clean before moby's Join
      [{ h: { name: 'l', type: 'symlink', linkname: '' } }, /empty target/],
    ];
    for (const [e, re] of cases) await refused(box('climb'), await pack(e), 'E_INVALID', re);
    const s = box('stay');
    await apply(s, await pack(file('x', 'x'), { h: { name: 'a/l', type: 'symlink', linkname: '../x' } }, { h: { name: 'a/m', type: 'symlink', linkname: 'b/../../x' } }, { h: { name: 'a/h', type: 'link', linkname: 'a/../x' } }));
    assert.equal(fs.readFileSync(path.join(s.root, 'a/l'), 'utf8'), 'x');
    assert.equal(fs.readlinkSync(path.join(s.root, 'a/m')), 'b/../../x'); // kept as written (the kernel needs a/b to follow it)
    assert.equal(fs.statSync(path.join(s.root, 'a/h')).ino, fs.statSync(path.join(s.root, 'x')).ino);
  });

  it('a symlink in the tree below that climbs out (made by another tool) is followed inside the root only', async () => {
    const s = box('lower');
    fs.symlinkSync('../../../..', path.join(s.root, 'up'));
    fs.symlinkSync('../outside', path.join(s.root, 'side'));
    await apply(s, await pack(file('up/a', 'a'), file('side/victim', 'in root')));
    assert.equal(fs.readFileSync(path.join(s.root, 'a'), 'utf8'), 'a');
    assert.equal(fs.readFileSync(path.join(s.root, 'outside/victim'), 'utf8'), 'in root');
  });

  it('NUL bytes and names past PATH_MAX or NAME_MAX are E_INVALID', async () => {
    await refused(box('nul'), Buffer.concat([paxHeader({ path: 'a\0b' }), rawHeader({ name: 'a' }), EOF_BLOCKS]), 'E_INVALID', /NUL byte in its name/);
    await refused(box('nul-link'), Buffer.concat([paxHeader({ linkpath: 'x\0y' }), rawHeader({ name: 'l', typeflag: '2' }), EOF_BLOCKS]), 'E_INVALID', /NUL byte in its symlink target/);
    await refused(box('long'), await pack(file('d/'.repeat(2100) + 'f')), 'E_INVALID', /Linux allows at most 4095/);
    await refused(box('component'), await pack(file('c'.repeat(256))), 'E_INVALID', /component of 256 bytes/);
    await refused(box('long-link'), await pack({ h: { name: 'l', type: 'symlink', linkname: 't'.repeat(5000) } }), 'E_INVALID', /symlink target of 5000 bytes/);
  });

  it('device nodes are made as root with their numbers; a fifo below is replaced, never opened', async () => {
    const s = box('dev');
    fs.mkdirSync(path.join(s.root, 'dev'));
    spawnSync('mkfifo', [path.join(s.root, 'dev/pipe')]);
    const r = await apply(s, await pack(
      { h: { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 } },
      { h: { name: 'dev/loop7', type: 'block-device', devmajor: 7, devminor: 7, mode: 0o660 } },
      { h: { name: 'dev/fifo', type: 'fifo', mode: 0o600 } },
      file('dev/pipe', 'a file where a fifo was: opening the fifo would block this test forever'),
    ));
    assert.equal(r.specials, 3);
    assert.deepEqual(r.warnings, []);
    const nul = fs.lstatSync(path.join(s.root, 'dev/null'));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, 0x103);
    const loop = fs.lstatSync(path.join(s.root, 'dev/loop7'));
    assert.ok(loop.isBlockDevice());
    assert.equal(loop.rdev, 0x707);
    assert.equal(fs.readFileSync(path.join(s.root, 'dev/pipe'), 'utf8').slice(0, 20), 'a file where a fifo ');
    await refused(box('bad-dev'), await pack({ h: { name: 'd', type: 'block-device', devmajor: 5000, devminor: 0 } }), 'E_INVALID', /device 5000:0/);
  });

  it('without root, device nodes are skipped with a warning (fifos are still made)', async () => {
    const s = box('unpriv');
    for (const d of [s.dir, s.root]) fs.chownSync(d, 65534, 65534);
    const f = path.join(tmp, 'unpriv.tar');
    fs.writeFileSync(f, await pack({ h: { name: 'null', type: 'character-device', devmajor: 1, devminor: 3 } }, { h: { name: 'fifo', type: 'fifo' } }, file('f')));
    fs.chmodSync(f, 0o644);
    // Load the module as root, then drop to nobody: the applier decides by its own uid.
    const script = `const { applyLayer } = require(${JSON.stringify(require.resolve('../../src/layers/apply'))});
      process.setgid(65534); process.setuid(65534);
      applyLayer({ file: ${JSON.stringify(f)} }, ${JSON.stringify(s.root)}).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.code, e.message); process.exit(1); });`;
    const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(out.status, 0, out.stderr);
    const r = JSON.parse(out.stdout) as ApplyResult;
    assert.deepEqual(r.warnings, ['skipped device node null: making device nodes needs root']);
    assert.equal(r.specials, 1);
    assert.deepEqual(fs.readdirSync(s.root).sort(), ['f', 'fifo']);
  });

  it('huge headers: E_PARSE at the header, before its body is read; memory stays bounded', async () => {
    // A PAX header of 64 MiB (a sparse file: its body is never read).
    const s = box('huge');
    const f = path.join(tmp, 'huge-pax.tar');
    fs.writeFileSync(f, rawHeader({ name: 'PaxHeader', typeflag: 'x', size: (64 * MiB).toString(8).padStart(11, '0') }));
    fs.truncateSync(f, 512 + 64 * MiB + 1024);
    const rss0 = process.memoryUsage().rss;
    await assert.rejects(applyLayer({ file: f }, s.root), (e) => isThinError(e, 'E_PARSE') && /pax-header header of 67108864 bytes; thinsim reads at most 1048576/.test((e as Error).message));
    assert.ok(process.memoryUsage().rss - rss0 < 32 * MiB, `RSS grew by ${((process.memoryUsage().rss - rss0) / MiB).toFixed(1)} MiB`);
    // A PAX header that claims 2^40 bytes, a global one, a GNU long name of 2 MiB.
    await refused(box('claim'), Buffer.concat([rawHeader({ name: 'P', typeflag: 'x', size: base256(2n ** 40n) }), EOF_BLOCKS]), 'E_PARSE', /1099511627776 bytes/);
    await refused(box('global'), Buffer.concat([rawHeader({ name: 'G', typeflag: 'g', size: (2 * MiB).toString(8).padStart(11, '0') }), EOF_BLOCKS]), 'E_PARSE', /pax-global-header header of 2097152 bytes/);
    await refused(box('gnu-long'), Buffer.concat([rawHeader({ name: '././@LongLink', typeflag: 'L', size: (2 * MiB).toString(8).padStart(11, '0') }), Buffer.alloc(2 * MiB), EOF_BLOCKS]), 'E_PARSE', /gnu-long-path header of 2097152 bytes/);
    // Just under the cap is read: a long name of MAX_TAR_META - 1 bytes is then too long for Linux.
    await refused(box('at-cap'), Buffer.concat([paxHeader({ path: 'n'.repeat(MAX_TAR_META - 40) }), rawHeader({ name: 'a' }), EOF_BLOCKS]), 'E_INVALID', /Linux allows at most 4095/);
  });

  it('member sizes: 2^40 is a truncated archive; negative, not a number, or a bad PAX size is E_PARSE (never a hang)', async () => {
    await refused(box('2^40'), Buffer.concat([rawHeader({ name: 'big', size: base256(2n ** 40n) }), body('some bytes'), EOF_BLOCKS]), 'E_PARSE', /truncated tar: it ends inside member "big": 1099511626240 more bytes were due/);
    await refused(box('2^60'), Buffer.concat([rawHeader({ name: 'big', size: base256(2n ** 60n) }), EOF_BLOCKS]), 'E_PARSE', /not a byte count/);
    await refused(box('negative'), Buffer.concat([rawHeader({ name: 'neg', size: base256(-5n) }), EOF_BLOCKS]), 'E_PARSE', /size -\d+, which is not a byte count/);
    await refused(box('nan'), Buffer.concat([rawHeader({ name: 'nan', size: '99999999999' }), EOF_BLOCKS]), 'E_PARSE', /size NaN, which is not a byte count/);
    for (const size of ['abc', '-5', '1e3', '99999999999999999999']) {
      await refused(box('pax-size'), Buffer.concat([paxHeader({ size }), rawHeader({ name: 'p' }), EOF_BLOCKS]), 'E_PARSE', /PAX size|not a byte count/);
    }
  });

  it('truncated archives: a cut inside a header, a body, or before the end-of-archive block is E_PARSE naming the layer', async () => {
    const whole = await pack(file('a', 'a'.repeat(1000)), file('b', 'b'));
    const cases: Array<[number, RegExp]> = [[0, /is empty/], [100, /ends inside a header/], [512 + 10, /ends inside member "a"/], [1536, /ends after member "a" without the end-of-archive block/], [2048, /ends inside member "b"/], [2560, /ends after member "b" without the end-of-archive block/]];
    for (const [cut, re] of cases) await refused(box('cut'), whole.subarray(0, cut), 'E_PARSE', re);
    await apply(box('whole'), whole.subarray(0, 2560 + 512)); // one end block is enough (GNU tar accepts it)
  });

  it('regressions found by test/fuzz/tar-fuzz (seed 1818)', async () => {
    // A directory that a later entry replaces by a file: its time was set at the end anyway (raw ENOTDIR).
    const s = box('dir-then-file');
    const r = await apply(s, await pack({ h: { name: '/a/a', type: 'directory', mode: 0o755 } }, file('a', 'now a file')));
    assert.equal(r.dirs, 1);
    assert.equal(fs.readFileSync(path.join(s.root, 'a'), 'utf8'), 'now a file');
    // The same directory twice: the later entry's time wins.
    const t = box('dir-twice');
    await apply(t, await pack({ h: { name: 'd', type: 'directory', mode: 0o755, mtime: new Date(1e12) } }, { h: { name: 'd', type: 'directory', mode: 0o755, mtime: new Date(2e12) } }));
    assert.equal(fs.statSync(path.join(t.root, 'd')).mtimeMs, 2e12);
  });

  it('extended attributes: an unsupported namespace is a warning (as moby); names Linux cannot hold and floods are E_INVALID', async () => {
    const x = (pax: Record<string, string>) => pack({ h: { name: 'f', type: 'file', mode: 0o644, pax } as tar.Headers, body: 'x' });
    const r = await apply(box('xattr'), await x({ 'SCHILY.xattr.user.ok': 'v', 'SCHILY.xattr.bogus.ns': 'v' }));
    assert.deepEqual(r.warnings, ['extended attribute bogus.ns on f not applied: Operation not supported']);
    await refused(box('xattr-long'), await x({ ['SCHILY.xattr.user.' + 'n'.repeat(300)]: 'v' }), 'E_INVALID', /extended attribute .* Linux cannot hold/);
    await refused(box('xattr-flood'), await x(Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`SCHILY.xattr.user.a${i}`, 'v']))), 'E_INVALID', /129 extended attributes; thinsim applies at most 128/);
  });
});
