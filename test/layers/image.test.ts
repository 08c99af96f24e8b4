/**
 * Image import onto thin-snapshot layers, against umoci and skopeo: the top layer of an
 * imported image, mounted, is the tree `umoci unpack` makes; DiffIDs are those umoci stat
 * and skopeo inspect report, ChainIDs follow from them (computed here independently) and
 * are what Docker's layerdb records hold; images sharing a base share its devices; a
 * DiffID mismatch leaves nothing behind; removing one image leaves the other whole.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isThinError } from '../../src/errors';
import { importImage, listImages, removeImage } from '../../src/layers/image';
import type { LayerStore } from '../../src/layers/snapshotter';
import { buildFixture, compareTrees, missingMount, missingTools, skopeoConfig, umociDiffIds, walkTree, type Fixture } from './image-fixtures';
import { freshStore } from './store-helpers';

const skip = missingTools() ?? missingMount();
const sha = (s: string) => 'sha256:' + createHash('sha256').update(s).digest('hex');

describe('image import onto a layer store', { skip }, () => {
  let fx: Fixture;
  let tmp: string;
  let store: LayerStore;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-image-'));
    fx = buildFixture(tmp);
    store = await freshStore(tmp);
  });
  after(async () => {
    await store?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('a DiffID that does not match the config fails the import and leaves nothing behind', async () => {
    const dir = path.join(tmp, 'bad-archive');
    fs.mkdirSync(dir);
    execFileSync('tar', ['-C', dir, '-xf', fx.dockerArchive.app]);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    const cfgFile = path.join(dir, manifest[0].Config);
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    cfg.rootfs.diff_ids[3] = 'sha256:' + 'ab'.repeat(32);
    fs.chmodSync(cfgFile, 0o644);
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const before = store.list().map((l) => l.name);
    await assert.rejects(importImage(store, dir), (e) => isThinError(e, 'E_CORRUPT') && /DiffID/.test((e as Error).message));
    assert.deepEqual(store.list().map((l) => l.name), before);
    assert.deepEqual(listImages(store), []);
    assert.deepEqual(fs.readdirSync(path.join(store.pool.dir, 'docker/image/devicemapper/layerdb/sha256')), []);
  });

  it('OCI layout: the mounted top layer is umoci unpack\'s tree; DiffIDs, ChainIDs, layerdb and image ID match the tools', async () => {
    const r = await importImage(store, fx.layout);
    const app = r.images.find((i) => i.tags.includes('oci:app'));
    assert.ok(app, JSON.stringify(r.images.map((i) => i.tags)));
    const diffIds = umociDiffIds(fx.layout, 'app');
    assert.deepEqual(app.layers.map((l) => l.diffId), diffIds);
    const chain: string[] = [];
    for (const d of diffIds) chain.push(chain.length ? sha(`${chain[chain.length - 1]} ${d}`) : d);
    assert.deepEqual(app.layers.map((l) => l.chainId), chain);
    assert.equal(app.id, skopeoConfig(`oci:${fx.layout}:app`).configDigest);
    const layerdb = path.join(store.pool.dir, 'docker/image/devicemapper/layerdb/sha256');
    for (const [i, c] of chain.entries()) {
      const d = path.join(layerdb, c.slice(7));
      assert.equal(fs.readFileSync(path.join(d, 'diff'), 'utf8').trim(), diffIds[i]);
      if (i > 0) assert.equal(fs.readFileSync(path.join(d, 'parent'), 'utf8').trim(), chain[i - 1]);
      else assert.ok(!fs.existsSync(path.join(d, 'parent')));
      assert.equal(fs.readFileSync(path.join(d, 'cache-id'), 'utf8').trim(), store.stat(c).cacheId);
    }
    const imagedb = path.join(store.pool.dir, 'docker/image/devicemapper/imagedb/content/sha256', app.id.slice(7));
    assert.equal(sha(fs.readFileSync(imagedb, 'latin1')), app.id);
    for (const l of app.layers) assert.equal(l.mappedBytes, l.exclusiveBytes + l.sharedBytes);
    const top = chain[chain.length - 1];
    const got = await store.withMounted(top, (d) => walkTree(d), { readOnly: true });
    assert.deepEqual(compareTrees(await walkTree(fx.rootfs.app), got), []);
    // base and other came from the same layout: other shares base's two layers
    const other = r.images.find((i) => i.tags.includes('oci:other'))!;
    assert.deepEqual(other.layers.slice(0, 2).map((l) => l.shared), [true, true]);
  });

  it('docker-archive of an image already present: every layer is shared, no new device', async () => {
    const before = store.list().map((l) => `${l.name}=${l.deviceId}`);
    const r = await importImage(store, fx.dockerArchive.app);
    assert.deepEqual(r.images[0].tags, ['thinsim/app:latest']);
    assert.ok(r.images[0].layers.every((l) => l.shared));
    assert.deepEqual(store.list().map((l) => `${l.name}=${l.deviceId}`), before);
    assert.deepEqual(r.images[0].layers.map((l) => l.diffId), skopeoConfig(`docker-archive:${fx.dockerArchive.app}`).diffIds);
  });

  it('two images share the base devices; removing one leaves the other whole', async () => {
    await importImage(store, fx.dockerArchive.other);
    const rows = listImages(store);
    const app = rows.find((i) => i.tags.includes('oci:app'))!;
    const other = rows.find((i) => i.tags.includes('thinsim/other:latest'))!;
    assert.equal(other.id, rows.find((i) => i.tags.includes('oci:other'))!.id, 'one image, two tags');
    const chainOf = (top: string) => { const out: number[] = []; for (let l = store.stat(top); ; l = store.stat(l.parent!)) { out.unshift(l.deviceId); if (!l.parent) return out; } };
    assert.deepEqual(chainOf(app.top).slice(0, 2), chainOf(other.top).slice(0, 2));
    // untag by tag while other tags remain: nothing else happens
    const u = await removeImage(store, 'thinsim/app:latest');
    assert.deepEqual(u, { untagged: ['thinsim/app:latest'], layersRemoved: [], freedBytes: 0 });
    const rm = await removeImage(store, 'oci:app');
    assert.equal(rm.deleted, app.id);
    assert.equal(rm.layersRemoved.length, 2, 'app\'s own two layers go, the shared base stays');
    assert.ok(rm.freedBytes > 0);
    assert.throws(() => store.stat(app.top), (e) => isThinError(e, 'E_NOT_FOUND'));
    const got = await store.withMounted(other.top, (d) => walkTree(d), { readOnly: true });
    assert.deepEqual(compareTrees(await walkTree(fx.rootfs.other), got), []);
    const base = rows.find((i) => i.tags.includes('oci:base'))!;
    assert.deepEqual(listImages(store).map((i) => i.id).sort(), [base.id, other.id].sort());
    // base, by id prefix: everything else goes; nothing is left
    await removeImage(store, 'oci:base');
    const last = await removeImage(store, other.id.slice(7, 19));
    assert.equal(last.layersRemoved.length, 3);
    assert.deepEqual(store.list(), []);
  });
});
