/**
 * fio's nbd engine (libnbd) on a snapshot served by `thinsim serve`: random 4k writes with
 * crc32c verification, several requests in flight; the origin reads back unchanged (its
 * chunks are shared with the snapshot until fio's writes break the sharing); afterwards
 * `thinsim check` and both thin_checks (0.9.0 and 1.x) accept the metadata.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ok, skipReason, tmpdir, tools09, tools1x } from '../helpers/oracle';
import { thinsimOk } from '../helpers/cli';
import { have, makePool, MiB, randomBytes, runOk, serve } from './helpers';

test('fio --ioengine=nbd random 4k writes with verify on a snapshot; origin unchanged; checks pass', async (t) => {
  if (!have('fio')) return t.skip('fio not installed');
  const fioEngines = await runOk('fio', ['--enghelp']);
  if (!/\bnbd\b/.test(fioEngines)) return t.skip('fio was built without the nbd engine');
  if (!have('nbdcopy')) return t.skip('nbdcopy not installed');
  const d = tmpdir('thinsim-nbd-');
  t.after(() => d.cleanup());
  const pool = makePool(d.file('pool'), { 1: '32M' });
  const origin = randomBytes(16 * MiB, 77);
  fs.writeFileSync(d.file('origin.bin'), origin);
  thinsimOk(['thin', 'write', pool, '1', '--offset', '0', '-i', d.file('origin.bin')]);
  thinsimOk(['thin', 'snap', pool, '2', '1']);
  const s = await serve(pool, d.path);
  try {
    const out = await runOk('fio', [
      '--name=snap', '--ioengine=nbd', `--uri=${s.uri(2)}`, '--rw=randwrite', '--bs=4k', '--size=16M',
      '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--randseed=42', '--verify_state_save=0', '--output-format=json',
    ], 300_000);
    const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
    assert.equal(job.error, 0, 'fio reports no error');
    assert.equal(job.write.io_bytes, 16 * MiB, 'fio wrote 16 MiB');
    assert.equal(job.read.io_bytes, 16 * MiB, 'fio read everything back to verify it');
    const back = d.file('origin-back.raw');
    await runOk('nbdcopy', [s.uri(1), back]);
    const got = fs.readFileSync(back);
    assert.ok(got.subarray(0, origin.length).equals(origin), 'the origin reads back unchanged');
    assert.ok(got.subarray(origin.length).every((b) => b === 0), 'the rest of the origin is still zeros');
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  thinsimOk(['check', pool]);
  const meta = path.join(pool, 'metadata');
  for (const [tools, reason, name] of [[tools09(), skipReason.tools09, '0.9.0'], [tools1x(), skipReason.tools1x, '1.x']] as const) {
    if (!tools) { t.diagnostic(`thin_check ${name} not run: ${reason}`); continue; }
    ok(tools.check(meta), `thin_check ${name}`);
  }
});
