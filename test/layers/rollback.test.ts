/**
 * A rollback that cannot undo a layer says so and marks it faulty (containerd's devmapper
 * snapshotter's Faulty state), instead of dropping the failure: the layer here cannot be
 * removed because it is still mounted. Once the cause is gone, the faulty layer removes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../helpers/pool-model';
import { expectCode } from './helpers';
import { isRoot, missingMount } from './image-fixtures';
import { freshStore } from './store-helpers';

test('rollback: a layer that cannot be removed is reported and marked faulty', { skip: missingMount() ?? (isRoot ? undefined : 'needs root for loop devices') }, async (t) => {
  const store = await freshStore(tempDir(t, 'thinsim-rollback-'));
  try {
    await store.prepare('base-layer');
    await store.commit('B', 'base-layer');
    await store.prepare('done', 'B');
    await store.prepare('stuck', 'B');
    const m = await store.mount('stuck', { readOnly: false });
    const cause = new Error('the apply failed');
    await expectCode(store.rollback(['done', 'stuck', 'never-made'], cause), 'E_IO', /^the apply failed; then the rollback failed: layer "stuck" could not be removed \(.*mounted.*\) and is marked faulty/);
    assert.deepEqual(store.list().map((l) => [l.name, l.faulty !== undefined]), [['B', false], ['stuck', true]], '"done" was removed, "stuck" kept and marked');
    assert.match(store.stat('stuck').faulty!, /a rollback could not remove it/);
    await m.unmount();
    await store.commit('S', 'stuck');
    await expectCode(store.prepare('child', 'S'), 'E_INVALID', /faulty/);
    await store.remove('S');
    assert.deepEqual(store.list().map((l) => l.name), ['B']);
    await assert.rejects(store.rollback(['B-gone'], cause), (e) => e === cause, 'nothing to undo: the cause itself');
  } finally {
    await store.close();
  }
});
