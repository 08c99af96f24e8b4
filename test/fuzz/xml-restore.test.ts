/**
 * Hostile XML for restore (fast-check, fixed seed; THINSIM_FUZZ_SEED overrides):
 * - mutations of a real dump (thinsim dump of the small fuzz pool): truncation, random
 *   bytes spliced in, characters dropped, numeric attributes replaced by huge, negative,
 *   fractional or non-numeric values, unknown elements and attributes inserted;
 * - restored in-process with restoreFile onto an existing metadata file: the result is a
 *   restore that thin_check 1.1 accepts, or a ThinError with the file left byte-identical
 *   (nothing written if the XML is bad); never another exception;
 * - deep nesting (100,000 levels) and a huge attribute through the CLI, as a child with a
 *   timeout and a 256 MiB heap: exit 2 or 1 with a message, no stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { isThinError } from '../../src/errors';
import { restoreFile } from '../../src/thin/restore';
import { repoRoot, tmpdir, tools1x } from '../helpers/oracle';
import { runAsync, thinsimOk } from '../helpers/cli';
import { smallPool } from './pool-fixture';

const SEED = Number(process.env.THINSIM_FUZZ_SEED ?? 4242);
const tpt = tools1x();

const hugeNumber = fc.constantFrom('18446744073709551616', '99999999999999999999999999', '-1', '1.5', '0x10', '', 'NaN', '1e30', '4294967296', '9007199254740993');

type Mutation = { kind: 'truncate'; at: number } | { kind: 'splice'; at: number; bytes: string } | { kind: 'drop'; at: number; n: number }
  | { kind: 'number'; which: number; value: string } | { kind: 'element'; at: number; tag: string } | { kind: 'attr'; which: number; name: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.string({ maxLength: 12 }) }),
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('number' as const), which: fc.nat(), value: hugeNumber }),
  fc.record({ kind: fc.constant('element' as const), at: fc.nat(), tag: fc.constantFrom('<foo/>', '<foo bar="1">', '</device>', '<device dev_id="1">', '<range_mapping/>', '<![CDATA[x]]>', '<!-- c -->', '&bogus;') }),
  fc.record({ kind: fc.constant('attr' as const), which: fc.nat(), name: fc.constantFrom('unknown', 'dev_id', 'time', 'x:y') }),
);

function mutate(xml: string, ms: Mutation[]): string {
  let s = xml;
  for (const m of ms) {
    switch (m.kind) {
      case 'truncate': s = s.slice(0, m.at % (s.length + 1)); break;
      case 'splice': { const i = m.at % (s.length + 1); s = s.slice(0, i) + m.bytes + s.slice(i); break; }
      case 'drop': { const i = m.at % (s.length + 1); s = s.slice(0, i) + s.slice(i + m.n); break; }
      case 'number': {
        const nums = [...s.matchAll(/="(\d+)"/g)];
        if (!nums.length) break;
        const n = nums[m.which % nums.length];
        s = s.slice(0, n.index! + 2) + m.value + s.slice(n.index! + 2 + n[1].length);
        break;
      }
      case 'element': {
        const tags = [...s.matchAll(/>\n/g)];
        if (!tags.length) break;
        const i = tags[m.at % tags.length].index! + 2;
        s = s.slice(0, i) + m.tag + '\n' + s.slice(i);
        break;
      }
      case 'attr': {
        const tags = [...s.matchAll(/<([a-z_]+) /g)];
        if (!tags.length) break;
        const t = tags[m.which % tags.length];
        const i = t.index! + t[0].length;
        s = s.slice(0, i) + `${m.name}="7" ` + s.slice(i);
        break;
      }
    }
  }
  return s;
}

test('restore of mutated dumps: a restore thin_check accepts, or a ThinError and the file untouched', { skip: tpt ? false : 'thin-provisioning-tools 1.x missing (scripts/get-oracles.sh)' }, async () => {
  const d = tmpdir('thinsim-xmlfuzz-');
  try {
    const pool = smallPool(d.file('pool'), d.file('w.bin'));
    const xml = thinsimOk(['dump', pool]);
    const target = d.file('target.meta');
    fs.copyFileSync(path.join(pool, 'metadata'), target);
    const before = fs.readFileSync(target);
    const input = d.file('in.xml');
    let accepted = 0;
    let refused = 0;
    await fc.assert(fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (ms) => {
      const text = mutate(xml, ms);
      fs.writeFileSync(input, text);
      try {
        await restoreFile(target, input, { metadataSize: before.length });
      } catch (e) {
        if (!isThinError(e)) throw new Error(`not a ThinError: ${(e as Error)?.stack ?? e}`);
        refused++;
        assert.ok(fs.readFileSync(target).equals(before), `refused (${(e as Error).message}) but the metadata file changed`);
        return;
      }
      accepted++;
      const c = tpt!.check(target);
      fs.writeFileSync(target, before);
      assert.equal(c.status, 0, `restore accepted it, thin_check 1.1 rejects the result:\n${c.stderr}`);
    }), { seed: SEED, numRuns: 150 });
    assert.ok(refused > 20, `most mutations are refused (${refused} refused, ${accepted} accepted)`);
  } finally {
    d.cleanup();
  }
});

test('restore of deep nesting and huge attributes through the CLI: a clear error in time, bounded heap', async () => {
  const d = tmpdir('thinsim-xmlfuzz-');
  try {
    const deep = d.file('deep.xml');
    fs.writeFileSync(deep, '<superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="100">\n'
      + '<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">'.repeat(1) + '<x>'.repeat(100_000) + '</x>'.repeat(100_000) + '</device></superblock>\n');
    const huge = d.file('huge.xml');
    fs.writeFileSync(huge, `<superblock uuid="${'u'.repeat(8 << 20)}" time="0" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="${'9'.repeat(100_000)}"></superblock>\n`);
    const bin = path.join(repoRoot(), 'bin', 'thinsim.js');
    for (const file of [deep, huge]) {
      const r = await runAsync(process.execPath, ['--max-old-space-size=256', bin, 'restore', d.file(`out-${path.basename(file)}.meta`), '-i', file, '--metadata-size', '8M'], { timeoutMs: 60_000 });
      assert.ok(!r.timedOut, `${path.basename(file)}: restore finished in time`);
      assert.ok(r.status === 1 || r.status === 2, `${path.basename(file)}: exit ${r.status}\n${r.stderr.slice(0, 1500)}`);
      assert.match(r.stderr, /E_[A-Z_]+|error/i, `${path.basename(file)}: a message`);
      assert.doesNotMatch(r.stderr, /\n\s+at .*:\d+:\d+/, `${path.basename(file)}: no stack trace`);
      assert.ok(!fs.existsSync(d.file(`out-${path.basename(file)}.meta`)), 'no metadata file left behind');
    }
  } finally {
    d.cleanup();
  }
});
