/**
 * What the crash farm's layers scenario found, as directed cases.
 *
 * A removal used to discard a layer's blocks before its device transaction opened, so a
 * kill between the two left the layer committed, under its ChainID, with blocks discarded
 * (`image rm` had already dropped the image record), and the next `image import` of the
 * same image shared that layer by ChainID: an image that no longer mounted. Now the
 * discards run inside the transaction (DeviceTransactions.delete, after step 1). Here the
 * kill is stood in for by what the removal has done when it dies during its discards:
 * the image record gone, the transaction open (Docker's transaction-metadata), the top
 * layer's mapped ranges discarded. The next read-write open must complete the deletion,
 * and the import run again must make the tree `umoci unpack` makes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { importImage } from '../../src/layers/image';
import { LayerStore } from '../../src/layers/snapshotter';
import { Pool } from '../../src/pool/pool';
import { buildFixture, compareTrees, missingMount, missingTools, skopeoConfig, walkTree } from '../layers/image-fixtures';
import { chainIdModel } from './docker-records';

const skip = missingTools() ?? missingMount() ?? false;

test('a layer whose removal was killed during its discards is not reused by the next import', { skip }, async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-crash-discard-'));
  t.after(() => fs.rmSync(work, { recursive: true, force: true }));
  const fx = buildFixture(path.join(work, 'fx'));
  const chain = chainIdModel(skopeoConfig(`docker-archive:${fx.dockerArchive.app}`).diffIds);
  const dir = path.join(work, 'pool');
  await Pool.create(dir, { dataSize: 512 * 2 ** 20, metadataSize: 16 * 2 ** 20 }).close();
  let s = await LayerStore.open(dir, { baseSize: 64 * 2 ** 20, commitInterval: 0 });
  try {
    const r = await importImage(s, fx.dockerArchive.app);
    const img = r.images[0];
    // `image rm` as far as its kill: the image record is gone, then the top layer's discards.
    const { ImageRecords } = await import('../../src/layers/image-records');
    const records = new ImageRecords(dir);
    for (const tag of img.tags) records.untag(tag);
    records.removeImage(img.id);
    const top = s.stat(chain[chain.length - 1]);
    s.records.writeTransaction({ open_transaction_id: s.pool.status().transactionId + 1, device_hash: top.cacheId, device_id: top.deviceId });
    for (const run of s.pool.blockStatus(top.deviceId, 0, top.size)) if (run.mapped) await s.pool.discard(top.deviceId, run.offset, run.length);
  } finally {
    await s.close();
  }
  s = await LayerStore.open(dir, { commitInterval: 0 });
  try {
    assert.equal(s.recovery?.rolledBack?.device_hash !== undefined, true, 'the open completed the killed deletion');
    assert.ok(!s.list().some((l) => l.chainId === chain[chain.length - 1]), 'the half-discarded layer is gone, not kept under its ChainID');
    await importImage(s, fx.dockerArchive.app);
    const got = await s.withMounted(chain[chain.length - 1], (d) => walkTree(d), { readOnly: true });
    assert.deepEqual(compareTrees(await walkTree(fx.rootfs.app), got), []);
  } finally {
    await s.close();
  }
});
