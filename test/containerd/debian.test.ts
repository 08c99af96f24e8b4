/**
 * The real multi-layer image (Debian minbase + python3 + an app layer with
 * whiteouts; src/experiments/debian-python-image.ts, cached under ~/.cache/thinsim) through
 * an unmodified containerd with thinsim as its snapshotter: `ctr image import`, a
 * `ctr run --rm` of a python3 one-liner prints its answer, the app layer's deletions hold
 * in the container, `ctr image rm --sync` gives every snapshot back, both thin_checks pass.
 * The first run builds the image with mmdebstrap (minutes); later runs use the cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { containerdMissing, startContainerd } from '../../src/containerd/daemon';
import { debianPythonImage, DEBIAN_PYTHON_TAG } from '../../src/experiments/debian-python-image';
import { DockerRecords } from '../../src/layers/records';
import { Pool } from '../../src/pool/pool';
import { findTool } from '../../src/tools';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { attachMissing, createPool, metadataFile, MiB } from './helpers';
import { startSnapshotterProcess } from './snapshotter-process';

function skipReason(): string | undefined {
  const gone = ['mmdebstrap', 'umoci', 'skopeo'].filter((t) => !findTool(t));
  if (gone.length) return `needs ${gone.join(', ')} (apt-get install ${gone.join(' ')})`;
  return containerdMissing() ?? attachMissing();
}
const skip = skipReason() ?? false;
if (skip) console.log(`# containerd Debian image test skipped: ${skip}`);

test('containerd runs python3 from the multi-layer Debian image on thinsim snapshots', { skip, timeout: 3_600_000 }, async (t) => {
  const img = await debianPythonImage((l) => console.log(`# ${l}`));
  const dir = tempDir(t, 'thinsim-ctrd-debian-');
  const pool = await createPool(path.join(dir, 'pool'), 8192 * MiB);
  const sock = path.join(dir, 'thinsim.sock');
  const snap = await startSnapshotterProcess(pool, sock, ['--base-image-size', '2G']);
  const ctrd = await startContainerd({ dir, proxyPlugins: [{ name: 'thinsim', address: sock }] });
  try {
    await ctrd.ctrOk(['image', 'import', '--snapshotter', 'thinsim', img.file], 'ctr image import', { timeoutMs: 1_200_000 });
    const ref = `docker.io/${DEBIAN_PYTHON_TAG}`;
    const ls = await ctrd.ctrOk(['snapshots', '--snapshotter', 'thinsim', 'ls'], 'ctr snapshots ls');
    assert.equal(ls.trim().split('\n').slice(1).filter((l) => /Committed\s*$/.test(l)).length, 3, `three committed layers:\n${ls}`);
    const out = await ctrd.ctrOk(['run', '--rm', '--runc-root', ctrd.runcRoot, '--snapshotter', 'thinsim', ref, `py-${process.pid}`,
      'python3', '-c', 'import os, sys; print(sys.version_info[0], sum(1 for _ in os.scandir("/usr/bin")) > 10, os.path.exists("/usr/share/doc/python3"))'], 'ctr run python3');
    assert.equal(out.trim(), '3 True False', 'python3 runs; the app layer deleted /usr/share/doc');
    await ctrd.ctrOk(['image', 'rm', '--sync', ref], 'ctr image rm --sync');
    const left = await ctrd.ctrOk(['snapshots', '--snapshotter', 'thinsim', 'ls'], 'ctr snapshots ls');
    assert.equal(left.trim().split('\n').length, 1, `no snapshot is left:\n${left}`);
  } finally {
    await ctrd.stop();
    const r = await snap.stop();
    assert.deepEqual(r, { code: 0, signal: null }, `SIGTERM: exit 0 (${snap.stderr()})`);
  }
  const p = Pool.open(pool, { readOnly: true });
  try {
    const base = new DockerRecords(pool, true).readDevInfo('')!;
    assert.deepEqual(p.devices(), [base.device_id], 'only the base device is left');
  } finally {
    await p.close();
  }
  metadataOracles(t, metadataFile(pool));
});
