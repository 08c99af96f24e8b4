/**
 * After a hostile layer is applied, its symlinks stay in the tree: the tree operations
 * (thinsim layer cat/files/write, Docker's init layer; tree-ops.ts) must resolve them as
 * the container sees them, inside the root, never on the host. A sandbox's `root` holds
 * `etc -> /`, `out -> <the sandbox's outside dir>` (absolute), `up -> ../../..` (made
 * directly: the applier refuses to make it) and a symlink loop; the outside dir holds a
 * sentinel that must not change, and reads must never return it.
 */
import { before, after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isThinError } from '../../src/errors';
import { readTreeFile, readTreeFileCount, setupInitLayer, writeTreeFile } from '../../src/layers/tree-ops';
import { resolveInRoot } from '../../src/layers/root-path';
import { outsideState, sandbox, type Sandbox } from '../fuzz/tar-archives';

let tmp: string;

function hostile(): Sandbox {
  const s = sandbox(tmp, 'tree');
  fs.symlinkSync('/', path.join(s.root, 'etc'));
  fs.symlinkSync(s.outside, path.join(s.root, 'out'));
  fs.symlinkSync('../../..', path.join(s.root, 'up'));
  fs.symlinkSync('loop-b', path.join(s.root, 'loop-a'));
  fs.symlinkSync('loop-a', path.join(s.root, 'loop-b'));
  return s;
}

describe('tree operations resolve a hostile layer\'s symlinks inside the root', () => {
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-tree-hostile-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('resolveInRoot: absolute targets restart at the root, `..` stops at it, a missing tail is kept', () => {
    const s = hostile();
    assert.equal(resolveInRoot(s.root, 'etc/passwd'), path.join(s.root, 'passwd'));
    assert.equal(resolveInRoot(s.root, 'out/victim'), path.join(s.root, s.outside, 'victim'));
    assert.equal(resolveInRoot(s.root, 'up/x'), path.join(s.root, 'x'));
    assert.equal(resolveInRoot(s.root, 'etc', false), path.join(s.root, 'etc'), 'the last component unfollowed');
    assert.equal(resolveInRoot(s.root, 'new/dir/../f'), path.join(s.root, 'new/f'));
    assert.throws(() => resolveInRoot(s.root, 'loop-a/x'), (e) => isThinError(e, 'E_INVALID') && /too many symlinks/.test((e as Error).message));
  });

  it('reads through etc -> / or a link to a host path find the layer\'s files or none, never the host\'s', () => {
    const s = hostile();
    const before = outsideState(s);
    assert.throws(() => readTreeFile(s.root, 'out/victim'), (e) => isThinError(e, 'E_NOT_FOUND'));
    assert.throws(() => readTreeFile(s.root, 'etc/hostname'), (e) => isThinError(e, 'E_NOT_FOUND'), 'not the host\'s /etc/hostname');
    assert.throws(() => readTreeFileCount(s.root, 'up/etc/hostname'), (e) => isThinError(e, 'E_NOT_FOUND'));
    fs.writeFileSync(path.join(s.root, 'hostname'), 'layer\n');
    assert.equal(readTreeFile(s.root, 'etc/hostname').toString(), 'layer\n');
    assert.equal(readTreeFileCount(s.root, '/up/etc/hostname'), 6);
    assert.equal(outsideState(s), before);
  });

  it('writes through those links land in the root', () => {
    const s = hostile();
    const before = outsideState(s);
    // The layer has no such directory: the write fails as the kernel would fail it inside a chroot.
    assert.throws(() => writeTreeFile(s.root, 'out/victim', Buffer.from('x')), (e) => isThinError(e, 'E_NOT_FOUND'));
    fs.mkdirSync(path.join(s.root, s.outside), { recursive: true });
    writeTreeFile(s.root, 'out/victim', Buffer.from('written in the layer'));
    writeTreeFile(s.root, '/etc/new-file', Buffer.from('etc is the root'));
    assert.equal(fs.readFileSync(path.join(s.root, s.outside, 'victim'), 'utf8'), 'written in the layer');
    assert.equal(fs.readFileSync(path.join(s.root, 'new-file'), 'utf8'), 'etc is the root');
    assert.equal(outsideState(s), before);
    assert.throws(() => writeTreeFile(s.root, 'a\0b', Buffer.from('x')), (e) => isThinError(e, 'E_INVALID'));
  });

  it('Docker\'s init layer on an image whose etc is a link to the host makes its files inside the root', () => {
    const s = sandbox(tmp, 'init');
    fs.symlinkSync(s.outside, path.join(s.root, 'etc'));
    const before = outsideState(s);
    const made = setupInitLayer(s.root);
    assert.ok(made.includes('/etc/hosts'), made.join(' '));
    assert.ok(fs.existsSync(path.join(s.root, s.outside, 'hosts')));
    assert.equal(fs.lstatSync(path.join(s.root, 'etc')).isSymbolicLink(), true, 'the image\'s link is kept');
    assert.equal(outsideState(s), before, 'nothing was made on the host');
  });
});
