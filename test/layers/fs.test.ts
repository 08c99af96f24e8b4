/**
 * The filesystem helpers' refusals, and a read-only store beside a writer:
 *  - a missing tool is an E_NOT_FOUND error naming the Debian package to install (checked with
 *    a PATH that holds none of them, for every tool the layers run);
 *  - a layer without a filesystem (base made with "none") refuses to mount, clearly;
 *  - openReadOnly lists, stats and reports while a read-write store holds the pool, and
 *    refuses every change with E_READ_ONLY.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayerStore } from '../../src/layers';
import { requireTool, TOOL_PACKAGES } from '../../src/tools';
import { Pool } from '../../src/pool/pool';
import { MiB, tempDir } from '../helpers/pool-model';
import { expectCode } from './helpers';

test('a missing tool names its Debian package', (t) => {
  const saved = process.env.PATH;
  const dir = tempDir(t, 'thinsim-layers-path-');
  process.env.PATH = dir;
  try {
    for (const tool of ['nbdfuse', 'fuse2fs', 'fusermount3']) {
      assert.throws(() => requireTool(tool, 'test'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'E_NOT_FOUND');
        assert.match(e.message, new RegExp(`${tool} is not installed.*install the Debian package ${TOOL_PACKAGES[tool].split(' ')[0]}`));
        return true;
      });
    }
    assert.match(TOOL_PACKAGES.nbdfuse, /libnbd-bin/, 'bookworm\'s package is named too');
    assert.equal(TOOL_PACKAGES['mkfs.xfs'], 'xfsprogs');
    assert.equal(TOOL_PACKAGES['mkfs.ext4'], 'e2fsprogs');
    assert.throws(() => requireTool('thinsim-no-such-tool', 'test'), /install the Debian package thinsim-no-such-tool/);
  } finally {
    process.env.PATH = saved;
  }
});

test('read-only store beside a writer; a layer without a filesystem does not mount', async (t) => {
  const dir = tempDir(t, 'thinsim-layers-ro-');
  await Pool.create(dir, { dataSize: 128 * MiB, metadataSize: 8 * MiB }).close();
  const w = await LayerStore.open(dir, { baseSize: 8 * MiB, filesystem: 'none', commitInterval: 0 });
  try {
    await w.prepare('a');
    await w.write('a', 0, Buffer.alloc(65536, 3));
    await w.commit('A', 'a');
    await w.prepare('b', 'A');
    await expectCode(LayerStore.open(dir), 'E_POOL_BUSY');
    const r = await LayerStore.openReadOnly(dir);
    try {
      assert.deepEqual(r.list().map((l) => [l.name, l.kind]), [['A', 'committed'], ['b', 'active']]);
      assert.equal(r.usage('A')[0].mappedBytes, 65536);
      assert.equal((await r.read('A', 0, 4))[0], 3);
      await expectCode(r.prepare('c'), 'E_READ_ONLY');
      await expectCode(r.remove('b'), 'E_READ_ONLY');
      await expectCode(r.write('b', 0, Buffer.alloc(1)), 'E_READ_ONLY');
      await expectCode(r.mount('b', { readOnly: false }), 'E_READ_ONLY');
    } finally {
      await r.close();
    }
    await expectCode(w.mount('A'), 'E_INVALID', /has no filesystem/);
    assert.equal(w.filesystem(), 'none');
  } finally {
    await w.close();
  }
});
