/**
 * The thinsim CLI (node bin/thinsim.js, built into dist/): help and version, usage errors
 * (exit 2), missing files (non-zero, a clear message, no stack trace), and a restore -> check
 * -> dump -> ls -> delta round trip on the example of spec §10.4, checked against the spec's
 * own numbers and, where installed, thin-provisioning-tools 0.9.0 on the same file; and the
 * same verbs on a read-only loop device over that file (`<pool>` may be a block device).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ok, repoRoot, skipPart, skipReason, tmpdir, tools09, tools1x } from '../helpers/oracle';
import { thinsim } from '../helpers/cli';
import { SPEC_EXAMPLE_DEVICES } from '../helpers/spec-example';

const VERBS = ['restore', 'check', 'dump', 'ls', 'delta'];

/** spec §10.4: device 1 is a snapshot of device 0 taken at time 1. */
const EXAMPLE = `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1024">
` + SPEC_EXAMPLE_DEVICES;

function noStack(stderr: string, what: string): void {
  assert.doesNotMatch(stderr, /internal error|\n\s+at /, `${what}: no stack trace in:\n${stderr}`);
}

test('--help and --version', () => {
  const h = thinsim(['--help']);
  assert.equal(h.status, 0, h.stderr);
  for (const v of VERBS) assert.match(h.stdout, new RegExp(`thinsim ${v} `), `--help lists ${v}`);
  const v = thinsim(['--version']);
  assert.equal(v.status, 0, v.stderr);
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot(), 'package.json'), 'utf8'));
  // The line also names the hot-path implementation in use; test/cli/version.test.ts checks that part.
  assert.ok(v.stdout.startsWith(`thinsim ${pkg.version} (`), `--version prints package.json version: ${v.stdout}`);
  for (const verb of VERBS) {
    const r = thinsim([verb, '--help']);
    assert.equal(r.status, 0, `${verb} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`thinsim ${verb}`), `${verb} --help shows its usage`);
  }
});

test('usage errors exit 2 with a message', async (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const xml = dir.file('ex.xml');
  fs.writeFileSync(xml, EXAMPLE);
  const meta = dir.sparse('meta.bin', 4 * 1024 * 1024);
  assert.equal(thinsim(['restore', meta, '-i', xml, '-q']).status, 0);
  const cases: [string, string[], RegExp][] = [
    ['no command', [], /command/i],
    ['unknown command', ['frobnicate'], /frobnicate|unknown/i],
    ['unknown option', ['dump', meta, '--bogus'], /bogus/],
    ['missing positional', ['check'], /pool|argument/i],
    ['missing required option', ['delta', meta, '--snap1', '0'], /snap2/],
    ['bad ls field', ['ls', meta, '-o', 'DEV,NOPE'], /NOPE/],
    ['bad dump format', ['dump', meta, '-f', 'yaml'], /yaml|choices/i],
    ['restore without input', ['restore', meta], /input/],
    ['bad metadata size', ['restore', dir.file('m2'), '-i', xml, '--metadata-size', 'lots'], /lots|size/i],
    ['non-numeric device id', ['delta', meta, '--snap1', 'x', '--snap2', '1'], /snap1|number|x/i],
    ['non-numeric --dev filter', ['dump', meta, '--dev', 'x'], /dev|number|x/i],
  ];
  for (const [name, args, re] of cases) {
    await t.test(name, () => {
      const r = thinsim(args);
      assert.equal(r.status, 2, `${name}: exit status 2 (got ${r.status}): ${r.stderr}`);
      assert.match(r.stderr, re, `${name}: message`);
      noStack(r.stderr, name);
    });
  }
});

test('missing files: non-zero exit and a clear message', (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const missing = dir.file('no-such-pool');
  for (const args of [['check', missing], ['dump', missing], ['ls', missing], ['delta', missing, '--snap1', '0', '--snap2', '1']]) {
    const r = thinsim(args);
    assert.notEqual(r.status, 0, `${args[0]} on a missing path`);
    assert.ok(r.stderr.includes(missing), `${args[0]}: the message names the path: ${r.stderr}`);
    noStack(r.stderr, args[0]);
  }
  // A directory without a metadata file.
  const empty = dir.file('empty-dir');
  fs.mkdirSync(empty);
  const r = thinsim(['check', empty]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /metadata/);
  noStack(r.stderr, 'check on an empty directory');
  // An unknown device in delta is a failure, not a crash.
  const xml = dir.file('ex.xml');
  fs.writeFileSync(xml, EXAMPLE);
  const meta = dir.sparse('meta.bin', 4 * 1024 * 1024);
  assert.equal(thinsim(['restore', meta, '-i', xml, '-q']).status, 0);
  const d = thinsim(['delta', meta, '--snap1', '0', '--snap2', '7']);
  assert.notEqual(d.status, 0);
  assert.match(d.stderr, /device 7/);
  noStack(d.stderr, 'delta with an unknown device');
  // -m without a metadata snapshot.
  const m = thinsim(['dump', '-m', meta]);
  assert.notEqual(m.status, 0);
  assert.match(m.stderr, /metadata snapshot/);
  noStack(m.stderr, 'dump -m without a snapshot');
});

test('restore, check, dump, ls and delta round trip (spec §10.4 example)', (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const xml = dir.file('ex.xml');
  fs.writeFileSync(xml, EXAMPLE);
  const pool = dir.file('pool'); // a pool directory: restore writes pool/metadata
  const r = thinsim(['restore', pool, '-i', xml, '--metadata-size', '1M', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.equal(res.devices, 2);
  assert.equal(res.mappings, 111 + 101);
  const meta = path.join(pool, 'metadata');
  assert.equal(fs.statSync(meta).size, 1024 * 1024);
  const before = fs.readFileSync(meta);

  // check: clean; the pool directory and the file both work.
  for (const target of [pool, meta]) {
    const c = thinsim(['check', target]);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stdout, /^TRANSACTION_ID=2$/m);
  }
  const cj = JSON.parse(thinsim(['check', meta, '--json']).stdout);
  assert.equal(cj.ok, true);
  assert.equal(cj.devices, 2);
  assert.equal(cj.mappings, 212);
  // spec §10.4: blocks 0..99, 150, 160..169 and 200 are in use: 112 allocated.
  assert.equal(cj.dataAllocated, 112);
  assert.equal(cj.dataBlocks, 1024);
  assert.equal(thinsim(['check', meta, '-q']).stdout, '');

  // dump: the input back, with the superblock fields thinsim writes (flags 0, version 2).
  const want = EXAMPLE.replace('transaction="2" ', 'transaction="2" flags="0" version="2" ');
  assert.equal(thinsim(['dump', meta]).stdout, want);
  const out = dir.file('out.xml');
  assert.equal(thinsim(['dump', pool, '-o', out]).status, 0);
  assert.equal(fs.readFileSync(out, 'utf8'), want, 'dump -o');
  const one = thinsim(['dump', meta, '--dev', '1']).stdout;
  assert.ok(!one.includes('dev_id="0"') && one.includes('dev_id="1"'), 'dump --dev 1');
  const json = JSON.parse(thinsim(['dump', meta, '-f', 'json']).stdout);
  assert.equal(json.superblock.nr_data_blocks, 1024);
  assert.deepEqual(json.devices.map((d: { dev_id: number; mapped_blocks: number }) => [d.dev_id, d.mapped_blocks]), [[0, 111], [1, 101]]);

  // A second restore from the dump (stdin) gives the same pool.
  const again = dir.file('metadata');
  fs.writeFileSync(again, Buffer.alloc(0));
  fs.truncateSync(again, 1024 * 1024);
  const viaStdin = thinsim(['restore', again, '-i', '-', '-q'], { input: want });
  assert.equal(viaStdin.status, 0, viaStdin.stderr);
  assert.equal(thinsim(['dump', again]).stdout, want, 'restore from stdin');

  // ls, by the spec's story: data blocks 0..49, 51..99 and 150 are mapped by both devices
  // (shared); 50 and 160..169 only by device 0, 200 only by device 1 (exclusive).
  const ls = thinsim(['ls', meta, '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME', '--no-headers']);
  assert.equal(ls.status, 0, ls.stderr);
  const rows = ls.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  assert.deepEqual(rows, [[0, 111, 11, 100, 0, 0, 1], [1, 101, 1, 100, 1, 1, 1]]);

  // delta 0 -> 1: same 0..49, different 50, same 51..99 and 200, left_only 300..309.
  const delta = thinsim(['delta', meta, '--snap1', '0', '--snap2', '1']);
  assert.equal(delta.status, 0, delta.stderr);
  assert.match(delta.stdout, /<different begin="50" length="1"\/>/);
  assert.match(delta.stdout, /<left_only begin="300" length="10"\/>/);

  // The real tools on the same file, when installed.
  const t09 = tools09();
  if (t09) {
    assert.equal(thinsim(['ls', meta]).stdout, ok(t09.ls(meta), 'thin_ls').stdout, 'thin_ls default columns');
    assert.equal(thinsim(['dump', meta, '-f', 'human_readable']).stdout, ok(t09.dump(meta, ['-f', 'human_readable']), 'thin_dump -f human_readable').stdout);
    for (const v of [[], ['--verbose']]) {
      const args = ['--snap1', '0', '--snap2', '1', ...v];
      assert.equal(thinsim(['delta', meta, ...args]).stdout, ok(t09.delta(meta, args), 'thin_delta').stdout, `delta ${v.join(' ')}`);
    }
    assert.equal(ok(t09.dump(meta), 'thin_dump').stdout, want);
    for (const args of [['--skip-mappings'], ['--dev-id', '1'], ['--dev-id', '0', '--skip-mappings'], ['-f', 'human_readable', '--skip-mappings']]) {
      assert.equal(thinsim(['dump', meta, ...args]).stdout, ok(t09.dump(meta, args), `thin_dump ${args.join(' ')}`).stdout, `dump ${args.join(' ')}`);
    }
  } else {
    skipPart(t, 'the same verbs against thin_ls, thin_dump and thin_delta 0.9.0', skipReason.tools09);
  }
  assert.ok(before.equals(fs.readFileSync(meta)), 'check, dump, ls and delta leave the metadata untouched');
});

/** `losetup` attaching `file` (read-only with `ro`), or why it cannot be done here. */
function loopAttach(file: string, ro: boolean): string | Error {
  const r = spawnSync('losetup', [...(ro ? ['-r'] : []), '-f', '--show', file], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return new Error(r.error?.message ?? r.stderr.trim());
  return r.stdout.trim();
}

test('<pool> may be a metadata block device: read-only verbs on a read-only loop device, writes refused', (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const xml = dir.file('ex.xml');
  fs.writeFileSync(xml, EXAMPLE);
  const meta = dir.sparse('metadata', 1024 * 1024);
  assert.equal(thinsim(['restore', meta, '-i', xml, '-q']).status, 0);
  const before = fs.readFileSync(meta);
  const loop = loopAttach(meta, true);
  if (loop instanceof Error) {
    t.skip(`a read-only loop device cannot be attached here: ${loop.message}`);
    return;
  }
  t.after(() => { spawnSync('losetup', ['-d', loop]); });
  assert.ok(fs.statSync(loop).isBlockDevice(), `${loop} is a block device`);

  // Every read-only verb gives on the device exactly what it gives on the file.
  const runs: string[][] = [
    ['check'], ['dump'], ['dump', '-f', 'json'], ['ls'],
    ['ls', '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', '--no-headers'],
    ['delta', '--snap1', '0', '--snap2', '1', '--verbose'],
  ];
  for (const [verb, ...args] of runs) {
    const onFile = thinsim([verb, meta, ...args]);
    const onDev = thinsim([verb, loop, ...args]);
    assert.equal(onDev.status, 0, `${verb} ${loop}: ${onDev.stderr}`);
    assert.equal(onDev.stdout, onFile.stdout, `${verb} ${args.join(' ')}: the block device reads like the file`);
  }
  // The real tools read the same device: thin_dump 0.9.0 prints what we print (1.x words
  // its XML slightly differently), and thin_check 1.x passes it.
  const t09 = tools09();
  if (t09) assert.equal(thinsim(['dump', loop]).stdout, ok(t09.dump(loop), `thin_dump ${t09.version} ${loop}`).stdout);
  else skipPart(t, 'thin_dump 0.9.0 on the device', skipReason.tools09);
  const t1 = tools1x();
  if (t1) ok(t1.check(loop), `thin_check ${t1.version} ${loop}`);
  else skipPart(t, 'thin_check 1.x on the device', skipReason.tools1x);

  // Writing to a read-only device is refused with a clear message, and changes nothing.
  const w = thinsim(['restore', loop, '-i', xml]);
  assert.notEqual(w.status, 0, 'restore onto a read-only block device must fail');
  assert.match(w.stderr, /read-only|EROFS|EACCES|permission/i, w.stderr);
  noStack(w.stderr, 'restore onto a read-only device');
  assert.ok(before.equals(fs.readFileSync(meta)), 'the metadata behind the device is untouched');
});
