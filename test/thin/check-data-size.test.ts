/**
 * `thinsim check POOL` compares the data device's size with nr_data_blocks: a data file
 * truncated below it (or missing) is an error naming both sizes; the intact pool, and a
 * data file grown past it, check clean. The sizes come from the filesystem, not from thinsim.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpdir } from '../helpers/oracle';
import { thinsim, thinsimOk } from '../helpers/cli';

const MiB = 1024 * 1024;

test('check flags a data device shorter than nr_data_blocks, naming both sizes', (t) => {
  const dir = tmpdir('thinsim-datasize-');
  t.after(() => dir.cleanup());
  const pool = path.join(dir.path, 'pool');
  thinsimOk(['pool', 'create', pool, '--data-size', '64M', '--metadata-size', '4M', '--block-size', '64K']);
  const data = path.join(pool, 'data');
  assert.ok(fs.existsSync(data), 'the pool has a data file');
  const full = fs.statSync(data).size;
  assert.equal(full, 64 * MiB);
  assert.equal(thinsim(['check', pool]).status, 0, 'the intact pool checks clean');

  fs.truncateSync(data, 40 * MiB + 1000);
  const r = thinsim(['check', pool]);
  assert.equal(r.status, 1, `a truncated data file is damage: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`${40 * MiB + 1000} bytes`), 'names the data file size');
  assert.match(r.stderr, new RegExp(`${full} bytes`), 'names the size the metadata needs');
  assert.match(r.stderr, /1024 data blocks/, 'names nr_data_blocks (64 MiB / 64 KiB)');
  const json = JSON.parse(thinsim(['check', pool, '--json']).stdout) as { ok: boolean; findings: Array<{ path?: string }> };
  assert.equal(json.ok, false);
  assert.ok(json.findings.some((f) => f.path === 'data device'));

  fs.truncateSync(data, full + 4096);
  assert.equal(thinsim(['check', pool]).status, 0, 'a data file longer than needed is fine');
  fs.rmSync(data);
  assert.equal(thinsim(['check', pool]).status, 1, 'a missing data file is reported too');
});
