/**
 * `thinsim layer ...` end to end, as a user runs it: the verbs, --json, the tree, and bad
 * input giving a clear message and a non-zero exit (2 for usage errors, 1 for failures).
 * cat/files read an ext4 layer back through a read-only NBD mount (skipped where this
 * machine cannot mount).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers/pool-model';
import { thinsim, thinsimAsync, thinsimOk } from '../helpers/cli';
import { mountSkipReason, ours } from './helpers';

const CHAIN = 'sha256:' + 'ab'.repeat(32);

test('layer verbs on a block-level store: prepare, commit, view, ls, stat, usage, diff, synth, rm; errors', (t) => {
  const dir = tempDir(t, 'thinsim-layers-cli-');
  const pool = path.join(dir, 'pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '256M', '--metadata-size', '16M']);
  const prep = JSON.parse(thinsimOk(['layer', 'prepare', pool, 'a', '--fs', 'none', '--base-size', '16M', '--json']));
  assert.equal(prep.kind, 'active');
  assert.equal(prep.size, 16 * 2 ** 20);
  thinsimOk(['thin', 'write', pool, String(prep.deviceId), '--offset', '0', '-i', '/etc/hostname']);
  const c = JSON.parse(thinsimOk(['layer', 'commit', pool, 'A', 'a', '--chain-id', CHAIN, '--json']));
  assert.equal(c.chainId, CHAIN);
  thinsimOk(['layer', 'view', pool, 'v', 'A']);
  const synth = JSON.parse(thinsimOk(['layer', 'synth', pool, '--layers', '3', '--new', '10%', '--modify', '5%', '--delete', '2%', '--seed', '9', '--parent', 'A', '--json']));
  assert.equal(synth.layers.length, 3);
  assert.equal(thinsimOk(['layer', 'ls', pool]),
    'A (committed, device 2 sha256:abababababab)\n└─ v (view, device 3)\n└─ synth-1 (committed, device 4)\n  └─ synth-2 (committed, device 5)\n    └─ synth-3 (committed, device 6)\n');
  assert.equal(JSON.parse(thinsimOk(['layer', 'stat', pool, 'abab', '--json'])).name, 'A', 'a ChainID prefix names the layer');
  const usage = JSON.parse(thinsimOk(['layer', 'usage', pool, '--json']));
  assert.deepEqual(usage.map((u: { name: string }) => u.name), ['A', 'v', 'synth-1', 'synth-2', 'synth-3']);
  for (const u of usage) assert.equal(u.mappedBytes, u.exclusiveBytes + u.sharedBytes);
  assert.match(thinsimOk(['layer', 'usage', pool, 'synth-3']), /^NAME +MAPPED_BYTES +EXCLUSIVE_BYTES +SHARED_BYTES\nsynth-3 +\d+ +\d+ +\d+\n$/);
  const diff = JSON.parse(thinsimOk(['layer', 'diff', pool, 'A', 'synth-1', '--json']));
  assert.ok(diff.length > 0 && diff.every((r: { kind: string }) => r.kind === 'right_only'), 'the first synth layer only adds');
  assert.equal(thinsimOk(['layer', 'diff', pool, 'A', 'v']), '', 'a view does not differ from its parent');

  // Bad input: a message naming what is wrong, exit 2; failures exit 1.
  const cases: Array<[string[], number, RegExp]> = [
    [['layer', 'stat', pool, 'nope'], 1, /no layer "nope".*\[E_NOT_FOUND\]/],
    [['layer', 'rm', pool, 'A'], 2, /has children \(v, synth-1\)/],
    [['layer', 'prepare', pool, 'a2', '--parent', 'v'], 2, /only committed layers can be parents/],
    [['layer', 'prepare', pool, 'A'], 1, /already exists/],
    [['layer', 'commit', pool, 'X', 'A'], 2, /already committed/],
    [['layer', 'commit', pool, 'X', 'nope'], 1, /no active snapshot "nope"/],
    [['layer', 'commit', pool, 'X', 'a3', '--chain-id', 'sha256:xyz'], 1, /no active snapshot/],
    [['layer', 'synth', pool, '--layers', '2', '--new', '150%'], 2, /--new must be a percentage/],
    [['layer', 'prepare', pool, 'z', '--min-free-space', 'lots'], 2, /--min-free-space "lots"/],
    [['layer', 'prepare', pool, 'z', '--base-size', '12Q'], 2, /--base-size "12Q" is not a size/],
    [['layer', 'ls', path.join(dir, 'nothing')], 1, /nothing/],
    [['layer', 'files', pool, 'A'], 2, /has no filesystem/],
  ];
  for (const [args, status, re] of cases) {
    const r = thinsim(args);
    assert.equal(r.status, status, `${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  const bad = thinsim(['layer', 'prepare', pool, 'y']);
  assert.equal(bad.status, 0, bad.stderr);
  const badChain = thinsim(['layer', 'commit', pool, 'Y', 'y', '--chain-id', 'sha256:xyz']);
  assert.equal(badChain.status, 2);
  assert.match(badChain.stderr, /chainId must be "sha256:" and 64 lowercase hex digits/);

  thinsimOk(['layer', 'rm', pool, 'v']);
  thinsimOk(['layer', 'rm', pool, 'y']);
  for (const n of ['synth-3', 'synth-2', 'synth-1', 'A']) thinsimOk(['layer', 'rm', pool, n]);
  assert.equal(thinsimOk(['layer', 'ls', pool]), '(no layers)\n');
  const check = thinsim(['check', pool]);
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stderr, /clean: 1 device/, 'only the base device is left');
});

test('layer cat and files read an ext4 layer back through a read-only mount', async (t) => {
  const why = mountSkipReason('ext4');
  if (why) return t.skip(why);
  const dir = tempDir(t, 'thinsim-layers-cli-fs-');
  const pool = path.join(dir, 'pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '512M', '--metadata-size', '16M']);
  // Write a file through the library (a mount needs the store's own process), then commit by CLI.
  const { LayerStore } = await import('../../src/layers');
  const s = await LayerStore.open(pool, { baseSize: 64 * 2 ** 20 });
  try {
    await s.prepare('a');
    await s.withMounted('a', async (d) => {
      await fs.promises.mkdir(path.join(d, 'etc'));
      await fs.promises.writeFile(path.join(d, 'etc', 'os-release'), 'NAME=thinsim\n');
    });
  } finally {
    await s.close();
  }
  thinsimOk(['layer', 'commit', pool, 'A', 'a']);
  const cat = await thinsimAsync(['layer', 'cat', pool, 'A', '/etc/os-release']);
  assert.equal(cat.status, 0, cat.stderr);
  assert.equal(cat.stdout, 'NAME=thinsim\n');
  const files = await thinsimAsync(['layer', 'files', pool, 'A', '--json']);
  assert.equal(files.status, 0, files.stderr);
  const entries = JSON.parse(files.stdout) as Array<{ path: string; type: string; size: number }>;
  assert.deepEqual(entries.filter((e) => !e.path.startsWith('/lost+found')).map((e) => [e.path, e.type]), [['/etc', 'dir'], ['/etc/os-release', 'file']]);
  const missing = await thinsimAsync(['layer', 'cat', pool, 'A', '/etc/passwd']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /has no file \/etc\/passwd/);
  const escape = await thinsimAsync(['layer', 'cat', pool, 'A', '../../etc/passwd']);
  assert.notEqual(escape.status, 0);
  assert.deepEqual(ours(), [], 'no mount is left behind');
});
