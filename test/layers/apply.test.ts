/**
 * Layer apply against umoci: the layers of images umoci built (and skopeo converted),
 * applied in order onto a plain directory, must give the tree `umoci unpack` gives, and
 * the DiffIDs umoci and skopeo report. Path-safety cases use tars made with tar-stream's
 * packer, since no real tool writes hostile archives on purpose.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { applyLayer, memberPath } from '../../src/layers/apply';
import { chainIds, openImageArchive, unpackImage } from '../../src/layers/image-archive';
import { isThinError } from '../../src/errors';
import { buildFixture, compareTrees, missingTools, skopeoConfig, umociDiffIds, walkTree, type Fixture } from './image-fixtures';

const skip = missingTools();

describe('apply: umoci-built images onto a directory', { skip }, () => {
  let fx: Fixture;
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-apply-')); fx = buildFixture(tmp); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const form of ['oci dir', 'oci tar', 'docker-archive'] as const) {
    it(`${form}: every layer applied gives umoci unpack's tree; DiffIDs are umoci's and skopeo's`, async () => {
      const src = form === 'oci dir' ? fx.layout : form === 'oci tar' ? fx.layoutTar : fx.dockerArchive.app;
      const archive = await openImageArchive(src);
      assert.equal(archive.format, form === 'docker-archive' ? 'docker-archive' : 'oci');
      const img = archive.images.find((i) => i.repoTags.some((t) => t.endsWith(':app') || t.includes('/app:')))!;
      assert.ok(img, `image app in ${JSON.stringify(archive.images.map((i) => i.repoTags))}`);
      const out = fs.mkdtempSync(path.join(tmp, 'out-'));
      const results = await unpackImage(img, out);
      const diffIds = results.map((r) => r.diffId);
      assert.deepEqual(diffIds, umociDiffIds(fx.layout, 'app'));
      assert.deepEqual(diffIds, skopeoConfig(`docker-archive:${fx.dockerArchive.app}`).diffIds);
      assert.deepEqual(compareTrees(await walkTree(fx.rootfs.app), await walkTree(out)), []);
      // what the layers did, counted while applying
      assert.ok(results.some((r) => r.opaqueDirs === 1), 'the GNU tar layer has one opaque directory');
      assert.ok(results.reduce((n, r) => n + r.whiteouts, 0) >= 4, 'umoci wrote whiteouts for the deletions');
      assert.ok(results.every((r) => r.warnings.length === 0), JSON.stringify(results.map((r) => r.warnings)));
      for (const gone of ['etc/motd.hard', 'opt/app/data', 'opt/app/config', 'usr/share/doc', 'var/fifo']) assert.ok(!fs.existsSync(path.join(out, gone)), gone);
      assert.equal(fs.readFileSync(path.join(out, 'opt/app/fresh'), 'utf8'), 'only this is left in /opt/app\n');
      assert.equal(fs.statSync(path.join(out, 'bin/tool')).mode & 0o7777, 0o4755);
      assert.equal(fs.lstatSync(path.join(out, 'var/null')).isCharacterDevice(), true);
      assert.equal(chainIds(diffIds)[0], diffIds[0]);
    });
  }

  it('a blob that does not hash to its descriptor digest is refused', async () => {
    const archive = await openImageArchive(fx.layout);
    const l = archive.images[0].layers[0];
    const out = fs.mkdtempSync(path.join(tmp, 'bad-'));
    await assert.rejects(applyLayer(l.source, out, { expectBlobDigest: 'sha256:' + '0'.repeat(64) }), (e) => isThinError(e, 'E_CORRUPT'));
  });
});

function packTar(entries: Array<{ h: tar.Headers; body?: string }>): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry(e.h, e.body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
}

describe('apply: path safety', () => {
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-apply-safe-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const applyBuf = async (buf: Buffer, root: string) => {
    const f = path.join(tmp, `l${Math.random().toString(16).slice(2)}.tar`);
    fs.writeFileSync(f, buf);
    return applyLayer({ file: f }, root);
  };

  it('member names: ./ and / prefixes are the root; .. that climbs out is refused', () => {
    assert.equal(memberPath('./a/b/'), 'a/b');
    assert.equal(memberPath('/a//b'), 'a/b');
    assert.equal(memberPath('./'), '');
    assert.equal(memberPath('a/../b'), 'b');
    assert.throws(() => memberPath('../x'), (e) => isThinError(e, 'E_INVALID'));
    assert.throws(() => memberPath('a/../../x'), (e) => isThinError(e, 'E_INVALID'));
  });

  it('an entry climbing out, or a relative symlink pointing out, is refused with E_INVALID', async () => {
    const root = fs.mkdtempSync(path.join(tmp, 'r-'));
    await assert.rejects(applyBuf(await packTar([{ h: { name: '../escape', type: 'file' }, body: 'x' }]), root), (e) => isThinError(e, 'E_INVALID'));
    assert.ok(!fs.existsSync(path.join(tmp, 'escape')));
    await assert.rejects(applyBuf(await packTar([{ h: { name: 'a/link', type: 'symlink', linkname: '../../etc/passwd' } }]), root), (e) => isThinError(e, 'E_INVALID'));
    await assert.rejects(applyBuf(await packTar([{ h: { name: 'hl', type: 'link', linkname: '../outside' } }]), root), (e) => isThinError(e, 'E_INVALID'));
  });

  it('symlinks in the tree are followed inside the root only: etc -> / then etc/x lands in root/x', async () => {
    const root = fs.mkdtempSync(path.join(tmp, 'r-'));
    const outside = fs.mkdtempSync(path.join(tmp, 'outside-'));
    const r = await applyBuf(await packTar([
      { h: { name: 'etc', type: 'symlink', linkname: '/' } },
      { h: { name: 'up', type: 'symlink', linkname: `/../../../..${outside}` } },
      { h: { name: 'etc/x', type: 'file' }, body: 'in root' },
      { h: { name: 'up/y', type: 'file' }, body: 'still in root' },
    ]), root);
    assert.equal(r.files, 2);
    assert.equal(fs.readFileSync(path.join(root, 'x'), 'utf8'), 'in root');
    assert.equal(fs.readFileSync(path.join(root, outside, 'y'), 'utf8'), 'still in root');
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  it('a file replacing a hard-linked file does not write through the link; a dir replaces a file', async () => {
    const root = fs.mkdtempSync(path.join(tmp, 'r-'));
    await applyBuf(await packTar([
      { h: { name: 'a', type: 'file' }, body: 'original' },
      { h: { name: 'b', type: 'link', linkname: 'a' } },
      { h: { name: 'c', type: 'file' }, body: 'file' },
    ]), root);
    const r = await applyBuf(await packTar([
      { h: { name: 'b', type: 'file' }, body: 'replaced' },
      { h: { name: 'c', type: 'directory' } },
      { h: { name: 'c/d', type: 'file' }, body: 'in dir' },
    ]), root);
    assert.equal(r.entries, 3);
    assert.equal(fs.readFileSync(path.join(root, 'a'), 'utf8'), 'original');
    assert.equal(fs.readFileSync(path.join(root, 'b'), 'utf8'), 'replaced');
    assert.equal(fs.readFileSync(path.join(root, 'c/d'), 'utf8'), 'in dir');
  });

  it('zstd layers are refused with E_UNSUPPORTED; garbage and truncated tars are E_PARSE naming the layer', async () => {
    const root = fs.mkdtempSync(path.join(tmp, 'r-'));
    await assert.rejects(applyBuf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), root), (e) => isThinError(e, 'E_UNSUPPORTED'));
    await assert.rejects(applyBuf(Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(600, 1)]), root), (e) => isThinError(e, 'E_PARSE'));
    // A tar cut inside a member's body: the tar parser, not the filesystem, fails, and the error names the layer.
    const whole = await packTar([{ h: { name: 'big', type: 'file', mode: 0o644 }, body: 'x'.repeat(8192) }]);
    await assert.rejects(applyBuf(whole.subarray(0, 512 + 1000), root), (e) => isThinError(e, 'E_PARSE') && /truncated/.test((e as Error).message) && /\.tar/.test((e as Error).message));
  });
});
