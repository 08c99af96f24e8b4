/**
 * Containers on an imported image: Docker's init layer holds exactly the init files
 * (seen with thin_delta-style diff and in the mounted tree), the records are Docker's,
 * writes land in the container layer only, an image in use cannot be removed, and
 * removing the container gives its space back and leaves the image whole.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { isThinError } from '../../src/errors';
import { createContainer, listContainers, removeContainer } from '../../src/layers/container';
import { importImage, removeImage } from '../../src/layers/image';
import type { LayerStore } from '../../src/layers/snapshotter';
import { writeDockerArchive } from '../../src/experiments/image-gen';
import { missingMount, walkTree } from './image-fixtures';
import { freshStore } from './store-helpers';

const skip = missingMount();

describe('containers: init layer and read-write layer', { skip }, () => {
  let tmp: string;
  let store: LayerStore;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-container-'));
    store = await freshStore(tmp);
    await writeDockerArchive(path.join(tmp, 'img.tar'), {
      repoTag: 'demo/app:1',
      layers: [[{ path: 'etc', type: 'dir' }, { path: 'etc/hosts', type: 'file', content: '127.0.0.1 image\n' }, { path: 'big', type: 'file', content: { size: 4 << 20, seed: 1 } }]],
    });
    await importImage(store, path.join(tmp, 'img.tar'));
  });
  after(async () => {
    await store?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('create: the init layer adds Docker\'s init files (keeping what the image has), records in layerdb/mounts', async () => {
    const c = await createContainer(store, 'demo/app:1', 'web');
    assert.deepEqual(c.initFiles, ['/dev/pts', '/dev/shm', '/proc', '/sys', '/.dockerenv', '/etc/resolv.conf', '/etc/hostname', '/dev/console', '/etc/mtab']);
    const init = store.stat(c.initId);
    assert.equal(init.kind, 'committed');
    assert.equal(store.stat(c.mountId).kind, 'active');
    assert.equal(store.stat(c.mountId).parent, c.initId);
    const dir = path.join(store.pool.dir, 'docker/image/devicemapper/layerdb/mounts', c.containerId);
    assert.equal(fs.readFileSync(path.join(dir, 'mount-id'), 'utf8'), c.mountId);
    assert.equal(fs.readFileSync(path.join(dir, 'init-id'), 'utf8'), `${c.mountId}-init`);
    assert.equal(fs.readFileSync(path.join(dir, 'parent'), 'utf8'), store.stat(init.parent!).chainId);
    const tree = await store.withMounted(c.initId, async (d) => ({
      tree: await walkTree(d), hosts: await fsp.readFile(path.join(d, 'etc/hosts'), 'utf8'), mtab: await fsp.readlink(path.join(d, 'etc/mtab')),
    }), { readOnly: true });
    assert.equal(tree.hosts, '127.0.0.1 image\n', 'an /etc/hosts the image has is kept');
    assert.equal(tree.mtab, '/proc/mounts');
    assert.equal(tree.tree.get('.dockerenv')?.type, 'file');
    assert.equal(tree.tree.get('dev/pts')?.type, 'dir');
    assert.ok(store.diff(init.parent!, c.initId).length > 0, 'the init layer differs from the image');
    assert.deepEqual(store.diff(c.initId, c.mountId), [], 'a fresh container layer is its init layer');
    await assert.rejects(createContainer(store, 'demo/app:1', 'web'), (e) => isThinError(e, 'E_DEVICE_EXISTS'));
    await assert.rejects(createContainer(store, 'demo/app:1', '../bad'), (e) => isThinError(e, 'E_INVALID'));
  });

  it('writes land in the container layer only; the image cannot be removed while in use; rm gives the space back', async () => {
    const c = listContainers(store).find((x) => x.name === 'web')!;
    await store.withMounted(c.mountId, async (d) => {
      const fh = await fsp.open(path.join(d, 'big'), 'r+');
      await fh.write(Buffer.from('container was here'), 0, 18, 1 << 20);
      await fh.close();
      await fsp.writeFile(path.join(d, 'new'), Buffer.alloc(1 << 20, 9));
    });
    const imageTop = store.stat(c.initId).parent!;
    const seen = await store.withMounted(imageTop, async (d) => fsp.readFile(path.join(d, 'big')).then((b) => b.subarray(1 << 20, (1 << 20) + 18).toString('latin1')), { readOnly: true });
    assert.notEqual(seen, 'container was here');
    const [u] = store.usage(c.mountId);
    assert.ok(u.exclusiveBytes >= 1 << 20, `container layer holds its own bytes (${u.exclusiveBytes})`);
    await assert.rejects(removeImage(store, 'demo/app:1'), (e) => isThinError(e, 'E_INVALID') && /container web/.test((e as Error).message));
    const r = await removeContainer(store, 'web');
    assert.deepEqual(r.layersRemoved, [c.mountId, c.initId]);
    assert.ok(r.freedBytes >= u.exclusiveBytes, `freed ${r.freedBytes} >= ${u.exclusiveBytes}`);
    assert.deepEqual(listContainers(store), []);
    assert.ok(!fs.existsSync(path.join(store.pool.dir, 'docker/image/devicemapper/layerdb/mounts', c.containerId)));
    assert.ok(!fs.existsSync(path.join(store.pool.dir, 'docker/containers', c.containerId)));
    assert.equal((await removeImage(store, 'demo/app:1')).layersRemoved.length, 1);
  });
});
