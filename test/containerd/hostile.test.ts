/**
 * Hostile requests through gRPC: each gets a clear error with the errdefs code containerd
 * expects, nothing is half made, and the pool stays clean (records = devices; thinsim's
 * check and both thin_checks pass).
 *  - keys with `/` and `..` are opaque names (containerd's keys are "ns/id/name"): they
 *    are accepted and never become paths;
 *  - a NUL or another control character, an empty key, a 64 KiB key: InvalidArgument;
 *  - a label over 4096 bytes, 10 000 labels, 64 KiB of labels: InvalidArgument;
 *  - Prepare of an unknown parent: NotFound; Commit of a view: FailedPrecondition;
 *  - Remove and Prepare on one parent at once: exactly one wins, the other fails cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThinSnapshotter, startSnapshotServer } from '../../src/containerd';
import { SnapshotRecords } from '../../src/containerd/records';
import { DockerRecords } from '../../src/layers/records';
import { Pool } from '../../src/pool/pool';
import { metadataOracles, tempDir } from '../helpers/pool-model';
import { MiB, SnapshotsClient, attachMissing, createPool, grpcFailure, metadataFile } from './helpers';

const skip = attachMissing() ?? false;

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

test('hostile requests get clear gRPC errors and leave the pool clean', { skip, timeout: 300_000 }, async (t) => {
  const dir = tempDir(t, 'thinsim-ctrd-hostile-');
  const pool = await createPool(path.join(dir, 'pool'), 512 * MiB);
  const sock = path.join(dir, 's.sock');
  const snap = await ThinSnapshotter.open(pool, { baseSize: 32 * MiB });
  const server = await startSnapshotServer(snap, sock);
  const c = new SnapshotsClient(sock);
  const expect = async (p: Promise<unknown>, code: status, re: RegExp, what: string) => {
    const e = await grpcFailure(p);
    assert.equal(e.code, code, `${what}: code ${e.code} (${e.details})`);
    assert.match(e.details, re, `${what}: the message says what was wrong`);
  };
  try {
    await c.call('Prepare', { key: 'base', parent: '' });
    await c.call('Commit', { name: 'P', key: 'base' });
    const filesBefore = walk(dir).filter((f) => !f.includes(`${path.sep}run${path.sep}`)).sort();

    // Opaque names with / and ..
    const odd = ['default/1/../../../etc/passwd', '../x', 'a/./b//c', '/abs/olute'];
    for (const k of odd) await c.call('Prepare', { key: k, parent: 'P', labels: { k } });
    assert.deepEqual((await c.list(['labels.k'])).map((i) => i.name).sort(), [...odd].sort());
    const filesAfter = walk(dir).filter((f) => !f.includes(`${path.sep}run${path.sep}`)).sort();
    const added = filesAfter.filter((f) => !filesBefore.includes(f));
    assert.ok(added.every((f) => /docker\/devicemapper\/metadata\/[0-9a-f]{64}$/.test(f)), `only device records (named by cache-id) were added: ${added.join(', ')}`);
    for (const k of odd) await c.call('Remove', { key: k });

    // Bad keys.
    await expect(c.call('Prepare', { key: 'a\0b', parent: 'P' }), status.INVALID_ARGUMENT, /control character/, 'NUL in a key');
    await expect(c.call('Prepare', { key: 'tab\there', parent: 'P' }), status.INVALID_ARGUMENT, /control character/, 'a tab');
    await expect(c.call('Prepare', { key: '', parent: 'P' }), status.INVALID_ARGUMENT, /empty/, 'an empty key');
    await expect(c.call('Prepare', { key: 'k'.repeat(64 * 1024), parent: 'P' }), status.INVALID_ARGUMENT, /65536 characters/, 'a 64 KiB key');
    await expect(c.call('Commit', { name: 'n'.repeat(64 * 1024), key: 'x' }), status.INVALID_ARGUMENT, /65536 characters/, 'a 64 KiB name');
    await expect(c.call('Prepare', { key: 'k', parent: 'P\0' }), status.INVALID_ARGUMENT, /control character/, 'NUL in a parent');

    // Labels.
    await expect(c.call('Prepare', { key: 'k', parent: 'P', labels: { big: 'v'.repeat(5000) } }), status.INVALID_ARGUMENT, /4096/, 'one label over 4096 bytes');
    const many: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) many[`label-${i}`] = 'x';
    await expect(c.call('Prepare', { key: 'k', parent: 'P', labels: many }), status.INVALID_ARGUMENT, /10000 labels/, '10 000 labels');
    const heavy: Record<string, string> = {};
    for (let i = 0; i < 40; i++) heavy[`l${i}`] = 'y'.repeat(4000);
    await expect(c.call('Prepare', { key: 'k', parent: 'P', labels: heavy }), status.INVALID_ARGUMENT, /65536/, '160 KB of labels');
    await c.call('Prepare', { key: 'k', parent: 'P' });
    await expect(c.call('Update', { info: { name: 'k', labels: many }, update_mask: { paths: ['labels'] } }), status.INVALID_ARGUMENT, /labels/, 'Update with 10 000 labels');
    assert.deepEqual((await c.call('Stat', { key: 'k' })).info.labels, {}, 'a refused Update changes nothing');

    // Parents, views.
    await expect(c.call('Prepare', { key: 'k2', parent: 'no/such/parent' }), status.NOT_FOUND, /parent "no\/such\/parent" does not exist/, 'unknown parent');
    await c.call('View', { key: 'v', parent: 'P' });
    await expect(c.call('Commit', { name: 'V', key: 'v' }), status.FAILED_PRECONDITION, /only active snapshots can be committed/, 'Commit of a view');
    await expect(c.call('Prepare', { key: 'k3', parent: 'v' }), status.INVALID_ARGUMENT, /not a committed snapshot/, 'a view as parent');
    await expect(c.list(['labels."unterminated']), status.INVALID_ARGUMENT, /unterminated/, 'a bad filter');
    for (const k of ['k', 'v']) await c.call('Remove', { key: k });

    // Remove and Prepare on one parent at once, both orders, a few rounds.
    for (let round = 0; round < 4; round++) {
      await c.call('Prepare', { key: `q${round}`, parent: 'P' });
      await c.call('Commit', { name: `Q${round}`, key: `q${round}` });
      const calls = [c.call('Remove', { key: `Q${round}` }), c.call('Prepare', { key: `child${round}`, parent: `Q${round}` })];
      if (round % 2) calls.reverse();
      const [a, b] = await Promise.allSettled(calls);
      const [rm, prep] = round % 2 ? [b, a] : [a, b];
      if (rm.status === 'fulfilled') {
        assert.equal(prep.status, 'rejected', 'Prepare on a removed parent fails');
        assert.equal((prep as PromiseRejectedResult).reason.code, status.NOT_FOUND);
      } else {
        assert.equal(prep.status, 'fulfilled', 'Prepare won, so Remove must have seen a child');
        assert.equal((rm as PromiseRejectedResult).reason.code, status.FAILED_PRECONDITION);
        await c.call('Remove', { key: `child${round}` });
      }
      await c.call('Remove', { key: `Q${round}` }).catch((e) => assert.equal(e.code, status.NOT_FOUND));
    }
    assert.deepEqual((await c.list()).map((i) => i.name), ['P']);
  } finally {
    c.close();
    await server.stop();
    await snap.close();
  }
  // Clean: only the base and P, records for P only, no temporary files, checks pass.
  const recs = new SnapshotRecords(pool, true).read();
  assert.deepEqual(Object.keys(recs.snapshots), ['P']);
  const infos = new DockerRecords(pool, true).listDevInfos();
  assert.equal(infos.size, 2, 'the base and P');
  const p = Pool.open(pool, { readOnly: true });
  try {
    assert.deepEqual(p.devices().slice().sort(), [...infos.values()].map((d) => d.device_id).sort());
  } finally {
    await p.close();
  }
  assert.deepEqual(walk(pool).filter((f) => path.basename(f).startsWith('.tmp')), []);
  metadataOracles(t, metadataFile(pool));
});
