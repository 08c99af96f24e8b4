/**
 * `thinsim demo`: runs in under a minute, exits 0, tells the story on real ext4 when it
 * can (else says why it is synthetic), and what it leaves behind (--dir) is what the
 * other verbs read from the pool: the image, one container, a clean check.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { realFilesystemBlocker } from '../../src/experiments/demo';

const BIN = path.join(__dirname, '../../../bin/thinsim.js');
const thinsim = (args: string[]) => {
  const t0 = Date.now();
  const out = execFileSync(process.execPath, [BIN, ...args], { timeout: 120_000, maxBuffer: 16 << 20 }).toString();
  return { out, seconds: (Date.now() - t0) / 1000 };
};

describe('thinsim demo', () => {
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-demo-test-')); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('on real filesystems: image imported with whiteouts, one chunk copied, space back, clean; leaves a pool the verbs read', { skip: realFilesystemBlocker() }, (t) => {
    const dir = path.join(tmp, 'real');
    const { out, seconds } = thinsim(['demo', '--dir', dir]);
    t.diagnostic(`demo took ${seconds.toFixed(1)} s`);
    assert.ok(seconds < 60, `${seconds} s`);
    assert.match(out, /Real filesystems/);
    assert.match(out, /\/app\/config holds "main\.conf"/);
    assert.match(out, /\/usr\/share\/doc holds "NOTICE"/);
    assert.match(out, /the written chunk is one of them: one chunk copied for the write/);
    assert.match(out, /Data Space Used: /);
    assert.match(out, /clean: \d+ devices/);
    const freed = /the pool freed ([\d.]+)MB/.exec(out);
    assert.ok(freed && Number(freed[1]) >= 4, 'removing db gives back at least its 4 MiB file');
    const pool = path.join(dir, 'devicemapper');
    const images = JSON.parse(thinsim(['image', 'ls', pool, '--json']).out);
    assert.deepEqual(images.map((i: { tags: string[] }) => i.tags), [['thinsim/demo:1']]);
    const containers = JSON.parse(thinsim(['container', 'ls', pool, '--json']).out);
    assert.deepEqual(containers.map((c: { name: string }) => c.name), ['web']);
    execFileSync(process.execPath, [BIN, 'check', pool], { stdio: 'pipe' }); // exits non-zero on a finding
  });

  it('synthetic: block-level layers, one chunk copied, space back, clean', () => {
    const { out, seconds } = thinsim(['demo', '--synthetic']);
    assert.ok(seconds < 60, `${seconds} s`);
    assert.match(out, /Synthetic layers \(asked for with --synthetic\)/);
    assert.match(out, /pool data blocks used \+1; web differs from the image in 1 chunk\(s\) of 64 KiB/);
    assert.match(out, /the pool freed 4\.194MB/);
    assert.match(out, /clean: \d+ devices/);
  });
});
