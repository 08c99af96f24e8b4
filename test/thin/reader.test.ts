/**
 * Reading metadata that the real tools wrote, and writing metadata the real tools read:
 *  - random pool contents (test/helpers/thin-model.ts genModel: runs, snapshots sharing data
 *    blocks, one data block behind two virtual blocks, big ids and transaction ids) are
 *    restored by thin_restore 0.9.0 and 1.x; ThinMetadata opens the file and our dump equals
 *    thin_dump 0.9.0 of the same file and the generated model; `checkMetadata` is clean,
 *    except for thin_restore 0.9.0's known metadata nr_allocated quirk (spec §11.7 item 2),
 *    which must be reported as exactly that finding;
 *  - `thinsim restore` of random XML: both thin_checks pass and thin_dump gives the XML back
 *    (canonical form: flags 0, version 2, uuid "", as thinsim always writes);
 *  - bad XML: non-zero exit, an error naming the line, and the metadata file untouched.
 * Replay one seed with THINSIM_SEED=<seed>.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileDevice } from '../../src/io/file-device';
import { ThinMetadata } from '../../src/thin/metadata';
import { checkMetadata, type Finding } from '../../src/thin/check';
import { dumpMetadata } from '../../src/thin/dump';
import { XmlWriter } from '../../src/thin/xml/writer';
import { bothTools, ok, tmpdir, type TmpDir, type Tools } from '../helpers/oracle';
import { genModel, parseModel, replay, type DumpModel } from '../helpers/thin-model';
import { forSeedsInTmpdir } from '../helpers/seeds';
import { thinsim } from '../helpers/cli';

const MiB = 1024 * 1024;

/** genModel, with device times kept at or below the pool time (what a kernel produces). */
function saneModel(seed: number): DumpModel {
  const m = genModel(seed);
  for (const d of m.devices) {
    d.info.creationTime = Math.min(d.info.creationTime, m.sb.time);
    d.info.snapTime = Math.min(Math.max(d.info.snapTime, d.info.creationTime), m.sb.time);
  }
  return m;
}

/**
 * Does a device map one data block at two virtual blocks? genModel makes some; a kernel never
 * does. thin_check 1.1 then expects a data count of 1 (it counts such a block once per leaf)
 * while thin_restore 0.9.0 and 1.1 both store 2 (one per mapping), so 1.1 rejects even its
 * own restore of such XML: the 1.x check is skipped for them.
 */
function hasIntraDeviceDup(m: DumpModel): boolean {
  return m.devices.some((d) => new Set(d.mappings.map((x) => x.data)).size !== d.mappings.length);
}

/** The model as XML, as an input file for restore (one mapping call per run). */
function xmlOf(m: DumpModel): string {
  let s = '';
  replay(m, new XmlWriter((c) => (s += c)));
  return s;
}

/** Our dump of a metadata file, in-process (read-only open). */
function ourDump(file: string, metadataSnap = false): string {
  const dev = new FileDevice(file, { readOnly: true });
  try {
    const md = ThinMetadata.open(dev, { metadataSnap });
    let s = '';
    dumpMetadata(md, new XmlWriter((c) => (s += c)));
    return s;
  } finally {
    dev.close();
  }
}

const NR_ALLOCATED_QUIRK = /^nr_allocated is (\d+), but (\d+) blocks have a non-zero count \(thin_restore 0\.9\.0 is known to write one too many/;

/** Errors other than thin_restore 0.9.0's metadata nr_allocated one-too-high. */
function errorsBesidesQuirk(findings: Finding[]): { other: Finding[]; quirk: Finding[] } {
  const errs = findings.filter((f) => f.severity === 'error');
  const quirk = errs.filter((f) => {
    const m = f.message.match(NR_ALLOCATED_QUIRK);
    return m && f.path === 'metadata space map' && Number(m[1]) === Number(m[2]) + 1;
  });
  return { other: errs.filter((f) => !quirk.includes(f)), quirk };
}

function restoreWith(t: Tools, dir: TmpDir, xml: string, name: string): string {
  const x = dir.file(`${name}.xml`);
  fs.writeFileSync(x, xml);
  const meta = dir.sparse(`${name}.bin`, 16 * MiB);
  ok(t.restore(x, meta), `thin_restore ${t.version}`);
  return meta;
}


const quirksSeen: string[] = [];

test('metadata written by thin_restore 0.9.0 and 1.x reads back like thin_dump', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  await forSeedsInTmpdir(t, 8, 9100, (seed, dir) => {
    const model = saneModel(seed);
    const xml = xmlOf(model);
    for (const t of [t09, t1]) {
      const what = `seed ${seed} (THINSIM_SEED=${seed}), thin_restore ${t.version}`;
      const meta = restoreWith(t, dir, xml, `r${t.flavour}`);
      const theirs = ok(t09.dump(meta), 'thin_dump 0.9.0').stdout;
      const ours = ourDump(meta);
      assert.equal(ours, theirs, `${what}: our dump equals thin_dump 0.9.0`);
      const want = { ...model, sb: { ...model.sb, version: t.flavour === '1.x' ? 2 : model.sb.version } };
      assert.deepStrictEqual(parseModel(ours), want, `${what}: our dump is the restored model`);
      const rep = checkMetadata(new FileDevice(meta, { readOnly: true }));
      const { other, quirk } = errorsBesidesQuirk(rep.findings);
      assert.deepEqual(other.map((f) => `${f.message} [${f.path}]`), [], `${what}: checkMetadata`);
      if (t.flavour === '1.x') assert.equal(quirk.length, 0, `${what}: 1.x restores have exact nr_allocated`);
      else if (quirk.length) quirksSeen.push(`seed ${seed}: "${quirk[0].message}" (path "${quirk[0].path}", block ${quirk[0].block})`);
      // The CLI says the same: 0 for 1.x files; for 0.9.0 files exit 1 only because of the quirk.
      const cli = thinsim(['check', meta]);
      assert.equal(cli.status, quirk.length ? 1 : 0, `${what}: thinsim check exit status\n${cli.stderr}`);
      if (quirk.length) assert.match(cli.stderr, /error: nr_allocated is \d+, but \d+ blocks have a non-zero count/);
      assert.doesNotMatch(cli.stderr, /internal error|\n\s+at /, 'no stack trace');
    }
  });
  if (quirksSeen.length) t.diagnostic(`thin_restore 0.9.0 nr_allocated quirk reported by checkMetadata as: ${quirksSeen[0]} (${quirksSeen.length} seeds)`);
});

test('unusual field values from thin_restore read back like thin_dump (times past the pool time, huge ids)', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  await forSeedsInTmpdir(t, 6, 9200, (seed, dir) => {
    const model = genModel(seed);
    const xml = xmlOf(model);
    for (const t of [t09, t1]) {
      const meta = restoreWith(t, dir, xml, `w${t.flavour}`);
      assert.equal(ourDump(meta), ok(t09.dump(meta), 'thin_dump').stdout, `seed ${seed}, thin_restore ${t.version}: dump`);
      // The checker may object to device times after the pool time, but it must not crash.
      const rep = checkMetadata(new FileDevice(meta, { readOnly: true }));
      const { other } = errorsBesidesQuirk(rep.findings);
      for (const f of other) assert.match(f.message, /after the pool time/, `seed ${seed}: only time findings expected, got ${f.message}`);
    }
  });
});

test('thinsim restore of random XML: thin_check passes and thin_dump gives the XML back', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  await forSeedsInTmpdir(t, 8, 9300, (seed, dir) => {
    const model = seed % 3 === 0 ? genModel(seed) : saneModel(seed);
    const inputVersion = model.sb.version;
    const canonical = xmlOf({ ...model, sb: { ...model.sb, version: 2, flags: 0 } });
    const input = xmlOf(model).replace('uuid=""', seed % 2 ? 'uuid="some-uuid-string"' : 'uuid=""');
    const xmlFile = dir.file('in.xml');
    fs.writeFileSync(xmlFile, input);
    const what = `seed ${seed} (THINSIM_SEED=${seed}), input version ${inputVersion}`;
    // Into an existing sparse file, and into a path that does not exist yet.
    const existing = dir.sparse('existing.bin', (4 + (seed % 3) * 6) * MiB);
    // A missing path named "metadata" is created as a file (other missing paths become pool directories).
    const fresh = dir.file('metadata');
    for (const [meta, extra] of [[existing, []], [fresh, ['--metadata-size', '8M']]] as const) {
      const r = thinsim(['restore', meta, '-i', xmlFile, '-q', ...extra]);
      assert.equal(r.status, 0, `${what}: thinsim restore ${meta}: ${r.stderr}`);
      for (const tool of hasIntraDeviceDup(model) ? [t09] : [t1, t09]) {
        const c = tool.check(meta);
        assert.equal(c.status, 0, `${what}: thin_check ${tool.version} on thinsim restore output:\n${c.stderr}`);
      }
      assert.equal(ok(t09.dump(meta), 'thin_dump').stdout, canonical, `${what}: thin_dump of thinsim restore equals the input (canonical)`);
      const rep = checkMetadata(new FileDevice(meta, { readOnly: true }));
      const errs = rep.findings.filter((f) => f.severity === 'error' && !/after the pool time/.test(f.message));
      assert.deepEqual(errs.map((f) => f.message), [], `${what}: checkMetadata`);
    }
    assert.equal(fs.statSync(fresh).size, 8 * MiB, 'a new file gets --metadata-size');
  });
});

test('thin_dump 1.x output (<def>/<ref> shared runs) restores to the same pool', async (t) => {
  const tt = bothTools(t);
  if (!tt) return;
  const [t1, t09] = tt;
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  for (const seed of [9401, 9402, 9403]) {
    const model = saneModel(seed);
    const meta = restoreWith(t09, dir, xmlOf(model), `src${seed}`);
    const dump1 = ok(t1.dump(meta), 'thin_dump 1.x').stdout;
    const x = dir.file(`d1-${seed}.xml`);
    fs.writeFileSync(x, dump1);
    const out = dir.sparse(`out${seed}.bin`, 8 * MiB);
    const r = thinsim(['restore', out, '-i', x, '-q']);
    assert.equal(r.status, 0, r.stderr);
    ok(t1.check(out), 'thin_check 1.x');
    const want = ok(t09.dump(meta), 'thin_dump').stdout.replace(/version="\d"/, 'version="2"');
    assert.equal(ok(t09.dump(out), 'thin_dump').stdout, want, `seed ${seed}: 1.x dump -> thinsim restore -> thin_dump`);
  }
});

test('bad XML: non-zero exit, the line named, the metadata file untouched', (t) => {
  const dir = tmpdir();
  t.after(() => dir.cleanup());
  const head = '<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">';
  const dev = '  <device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">';
  const good = '    <single_mapping origin_block="0" data_block="0" time="0"/>';
  const cases: { name: string; lines: string[]; line: number }[] = [
    { name: 'not a number', lines: [head, dev, '    <single_mapping origin_block="0" data_block="x" time="0"/>', '  </device>', '</superblock>'], line: 3 },
    { name: 'mapping past the data device', lines: [head, dev, good, '    <range_mapping origin_begin="5" data_begin="90" length="20" time="0"/>', '  </device>', '</superblock>'], line: 4 },
    { name: 'missing attribute', lines: [head, dev, '    <single_mapping origin_block="0" time="0"/>', '  </device>', '</superblock>'], line: 3 },
    { name: 'unknown element', lines: [head, dev, good, '    <wibble/>', '  </device>', '</superblock>'], line: 4 },
    { name: 'duplicate device', lines: [head, dev, good, '  </device>', dev, '  </device>', '</superblock>'], line: 5 },
    { name: 'mismatched tag', lines: [head, dev, good, '  </superblock>', '</device>'], line: 4 },
    { name: 'mappings out of order', lines: [head, dev, '    <single_mapping origin_block="9" data_block="0" time="0"/>', '    <single_mapping origin_block="3" data_block="1" time="0"/>', '  </device>', '</superblock>'], line: 4 },
    { name: 'device id too large', lines: [head, '  <device dev_id="16777216" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">', '  </device>', '</superblock>'], line: 2 },
    { name: 'truncated document', lines: [head, dev, good, '  </device>', ''], line: 5 },
  ];
  // An existing, valid pool that must survive every failed restore byte for byte.
  const meta = dir.sparse('pool.bin', 4 * MiB);
  const okXml = dir.file('ok.xml');
  fs.writeFileSync(okXml, [head, dev, good, '  </device>', '</superblock>', ''].join('\n'));
  assert.equal(thinsim(['restore', meta, '-i', okXml, '-q']).status, 0);
  const before = fs.readFileSync(meta);
  for (const c of cases) {
    const x = dir.file(`${c.name.replace(/ /g, '-')}.xml`);
    fs.writeFileSync(x, c.lines.join('\n'));
    const r = thinsim(['restore', meta, '-i', x]);
    assert.notEqual(r.status, 0, `${c.name}: restore must fail`);
    assert.ok(!r.timedOut, `${c.name}: no hang`);
    assert.match(r.stderr, new RegExp(`(:${c.line}:\\d+|line ${c.line}\\b)`), `${c.name}: the error names line ${c.line}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, `${c.name}: no stack trace`);
    assert.ok(before.equals(fs.readFileSync(meta)), `${c.name}: the existing metadata file is unchanged`);
    // A restore into a new path that fails leaves no file behind.
    const sub = dir.file(`fresh-${c.name.replace(/ /g, '-')}`);
    fs.mkdirSync(sub);
    const fresh = path.join(sub, 'metadata');
    const r2 = thinsim(['restore', fresh, '-i', x, '--metadata-size', '4M']);
    assert.notEqual(r2.status, 0);
    assert.equal(fs.existsSync(fresh), false, `${c.name}: a failed restore does not leave a new file`);
  }
  // An empty input and a missing input file.
  const empty = dir.file('empty.xml');
  fs.writeFileSync(empty, '');
  for (const input of [empty, dir.file('missing.xml')]) {
    const r = thinsim(['restore', meta, '-i', input]);
    assert.notEqual(r.status, 0, `restore from ${input}`);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    assert.ok(before.equals(fs.readFileSync(meta)), `restore from ${input}: file unchanged`);
  }
});
