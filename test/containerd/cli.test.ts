/**
 * `thinsim snapshotter` refuses bad input with a clear message, exit status 2 (E_INVALID)
 * or 1, and leaves the pool byte for byte as it was: a missing pool, a bad size, an
 * address that is a file, too long for a unix socket, or already served; no --address.
 * The running verb's socket is 0600 (the gRPC behaviour is in service.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers/pool-model';
import { attachMissing, createPool, MiB } from './helpers';
import { startSnapshotterProcess } from './snapshotter-process';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'thinsim.js');
const run = (args: string[]) => spawnSync(process.execPath, [BIN, 'snapshotter', ...args], { encoding: 'utf8', timeout: 60_000 });
const digest = (pool: string) => ['pool.json', 'metadata'].map((f) => fs.readFileSync(path.join(pool, f)).toString('base64')).join('|');

test('thinsim snapshotter: bad input gets a clear error and leaves the pool as it was', async (t) => {
  const dir = tempDir(t, 'thinsim-ctrd-cli-');
  const pool = await createPool(path.join(dir, 'pool'), 64 * MiB);
  const before = digest(pool);
  fs.writeFileSync(path.join(dir, 'file'), 'x');
  const cases: Array<[string, string[], number, RegExp]> = [
    ['no pool', [path.join(dir, 'nope'), '--address', path.join(dir, 's.sock')], 1, /is not a thinsim pool .*thinsim pool create/],
    ['bad size', [pool, '--address', path.join(dir, 's.sock'), '--base-image-size', '12Q'], 2, /--base-image-size "12Q" is not a size/],
    ['address is a file', [pool, '--address', path.join(dir, 'file')], 2, /exists and is not a socket; choose another --address/],
    ['address too long', [pool, '--address', path.join(dir, 'a'.repeat(120))], 2, /longer than a unix socket allows/],
    ['no --address', [pool], 2, /Missing required argument: address/],
    ['bad fs type', [pool, '--address', path.join(dir, 's.sock'), '--fs-type', 'btrfs'], 2, /Invalid values/],
  ];
  for (const [what, args, status, re] of cases) {
    const r = run(args);
    assert.equal(r.status, status, `${what}: exit ${r.status}: ${r.stderr}`);
    assert.match(r.stderr, re, what);
    assert.equal(digest(pool), before, `${what}: the pool is unchanged`);
  }
});

test('thinsim snapshotter: a second server on the same address is refused; the socket is 0600', { skip: attachMissing() ?? false }, async (t) => {
  const dir = tempDir(t, 'thinsim-ctrd-cli2-');
  const pool = await createPool(path.join(dir, 'pool'), 64 * MiB);
  const other = await createPool(path.join(dir, 'other'), 64 * MiB);
  const sock = path.join(dir, 's.sock');
  const s = await startSnapshotterProcess(pool, sock);
  try {
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
    const before = digest(other);
    const r = run([other, '--address', sock]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /another server answers on .*s\.sock; stop it or choose another --address \[E_POOL_BUSY\]/);
    assert.equal(digest(other), before);
  } finally {
    assert.deepEqual(await s.stop(), { code: 0, signal: null });
  }
});
