/**
 * XML reader: every rejection is E_PARSE naming the element/attribute with the right line;
 * chunking does not change the result; memory stays flat on a huge streamed document.
 * (Reading the real tools' dumps is covered by oracle-*.test.ts and kernel-fixtures.test.ts.)
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import * as fs from 'node:fs';
import { isThinError } from '../../src/errors';
import { parseXml, readXml, XmlReader } from '../../src/thin/xml/reader';
import type { MetadataSink } from '../../src/thin/xml/types';
import { XmlWriter } from '../../src/thin/xml/writer';
import { genModel, RecordingSink, replay } from '../helpers/thin-model';
import { tmpdir } from '../helpers/oracle';

const SB = '<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1024">';
const DEV = '<device dev_id="0" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">';
const NUL: MetadataSink = { superblock() {}, device() {}, mapping() {}, endDevice() {}, endSuperblock() {} };

function parseError(xml: string, opts = {}): { message: string; line: number; column: number; element?: string; attribute?: string } {
  try {
    parseXml(xml, NUL, opts);
  } catch (e) {
    assert.ok(isThinError(e, 'E_PARSE'), `expected E_PARSE, got ${String(e)}`);
    const d = e.details as { line: number; column: number; element?: string; attribute?: string };
    return { message: e.message, line: d.line, column: d.column, element: d.element, attribute: d.attribute };
  }
  assert.fail(`no error for:\n${xml}`);
}

function doc(...deviceLines: string[]): string {
  return [SB, `  ${DEV}`, ...deviceLines.map((l) => `    ${l}`), '  </device>', '</superblock>', ''].join('\n');
}

test('reads the spec example into the expected events', () => {
  const xml = `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1024">
  <device dev_id="0" mapped_blocks="111" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="100" time="0"/>
    <single_mapping origin_block="200" data_block="150" time="0"/>
  </device>
  <device dev_id="1" mapped_blocks="0" transaction="1" creation_time="1" snap_time="1">
  </device>
</superblock>`;
  const calls: unknown[] = [];
  parseXml(xml, {
    superblock: (s) => calls.push(['sb', s]),
    device: (d) => calls.push(['dev', d]),
    mapping: (...a) => calls.push(['map', ...a]),
    endDevice: () => calls.push(['enddev']),
    endSuperblock: () => calls.push(['endsb']),
  });
  assert.deepStrictEqual(calls, [
    ['sb', { uuid: '', time: 1, transaction: 2, flags: 0, version: 2, dataBlockSize: 128, nrDataBlocks: 1024 }],
    ['dev', { devId: 0, mappedBlocks: 111, transaction: 0, creationTime: 0, snapTime: 1 }],
    ['map', 0, 0, 100, 0],
    ['map', 200, 150, 1, 0],
    ['enddev'],
    ['dev', { devId: 1, mappedBlocks: 0, transaction: 1, creationTime: 1, snapTime: 1 }],
    ['enddev'],
    ['endsb'],
  ]);
});

test('optional superblock attributes: flags, version, metadata_snap; unknown attributes ignored', () => {
  const rec = new RecordingSink();
  parseXml('<superblock uuid="abc" time="0" transaction="0" flags="1" version="1" data_block_size="256" nr_data_blocks="5" metadata_snap="17" extra="x"/>', rec);
  assert.deepStrictEqual(rec.model().sb, { uuid: 'abc', time: 0, transaction: 0, flags: 1, version: 1, dataBlockSize: 256, nrDataBlocks: 5, metadataSnap: 17 });
});

test('malformed XML is E_PARSE with the line where it broke', () => {
  let e = parseError(doc('<single_mapping origin_block="1" data_block="2" time="0">'));
  assert.equal(e.line, 4);
  assert.match(e.message, /malformed XML/);
  e = parseError(`${SB}\n  ${DEV}\n    <single_mapping origin_block="1" data_block="2" time="0"/\n  </device>\n</superblock>`);
  assert.equal(e.line, 3);
  e = parseError(`${SB}\n\n\n  <device dev_id="0" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0"`);
  assert.equal(e.line, 4);
  e = parseError(`${SB}\n`);
  assert.match(e.message, /unclosed tag: superblock/);
  e = parseError('');
  assert.match(e.message, /root element/);
  e = parseError(`${SB}</superblock>\n<superblock/>`);
  assert.equal(e.line, 2);
  e = parseError(`${SB}\n  &bogus;\n</superblock>`);
  assert.equal(e.line, 2);
});

test('every missing required attribute is named', () => {
  const required: Record<string, { tpl: (attrs: string) => string; attrs: Record<string, string> }> = {
    superblock: {
      tpl: (a) => `<superblock ${a}/>`,
      attrs: { uuid: '', time: '1', transaction: '2', data_block_size: '128', nr_data_blocks: '1024' },
    },
    device: {
      tpl: (a) => `${SB}\n<device ${a}/>\n</superblock>`,
      attrs: { dev_id: '0', mapped_blocks: '0', transaction: '0', creation_time: '0', snap_time: '0' },
    },
    single_mapping: {
      tpl: (a) => doc(`<single_mapping ${a}/>`),
      attrs: { origin_block: '0', data_block: '0', time: '0' },
    },
    range_mapping: {
      tpl: (a) => doc(`<range_mapping ${a}/>`),
      attrs: { origin_begin: '0', data_begin: '0', length: '2', time: '0' },
    },
  };
  for (const [el, { tpl, attrs }] of Object.entries(required)) {
    parseXml(tpl(Object.entries(attrs).map(([k, v]) => `${k}="${v}"`).join(' ')), NUL);
    for (const missing of Object.keys(attrs)) {
      const a = Object.entries(attrs).filter(([k]) => k !== missing).map(([k, v]) => `${k}="${v}"`).join(' ');
      const e = parseError(tpl(a));
      assert.equal(e.element, el);
      assert.equal(e.attribute, missing);
      assert.match(e.message, new RegExp(`<${el}> is missing required attribute ${missing}`));
      assert.equal(e.line, el === 'superblock' ? 1 : el === 'device' ? 2 : 3);
    }
  }
});

test('numbers: digits only, <= 2^53-1, u32 and 24-bit limits', () => {
  const sbWith = (k: string, v: string) => SB.replace(new RegExp(`${k}="[^"]*"`), `${k}="${v}"`) + '</superblock>';
  for (const bad of ['-1', '1.5', '0x10', ' 1', '', '1e3']) {
    const e = parseError(sbWith('transaction', bad));
    assert.equal(e.attribute, 'transaction');
    assert.match(e.message, /not a whole number/);
  }
  parseXml(sbWith('transaction', String(2 ** 53 - 1)), NUL);
  assert.match(parseError(sbWith('transaction', String(2 ** 53))).message, /exceeds 2\^53-1/);
  assert.match(parseError(sbWith('nr_data_blocks', '18446744073709551615')).message, /exceeds 2\^53-1/);
  parseXml(sbWith('time', String(2 ** 32 - 1)), NUL);
  assert.match(parseError(sbWith('time', String(2 ** 32))).message, /time="4294967296" is out of range/);
  assert.match(parseError(sbWith('data_block_size', String(2 ** 32))).message, /out of range/);
  assert.match(parseError(sbWith('data_block_size', '0')).message, /data_block_size="0"/);

  const devWith = (k: string, v: string) => `${SB}\n${DEV.replace(new RegExp(`${k}="[^"]*"`), `${k}="${v}"`)}</device></superblock>`;
  parseXml(devWith('dev_id', String(2 ** 24 - 1)), NUL);
  assert.equal(parseError(devWith('dev_id', String(2 ** 24))).attribute, 'dev_id');
  assert.equal(parseError(devWith('creation_time', String(2 ** 32))).attribute, 'creation_time');
  assert.equal(parseError(devWith('snap_time', String(2 ** 32))).attribute, 'snap_time');

  assert.equal(parseError(doc('<single_mapping origin_block="0" data_block="0" time="4294967296"/>')).attribute, 'time');
  assert.match(parseError(doc('<range_mapping origin_begin="0" data_begin="0" length="0" time="0"/>')).message, /at least 1 block/);
  assert.match(parseError(doc(`<range_mapping origin_begin="${2 ** 53 - 2}" data_begin="0" length="3" time="0"/>`)).message, /past origin block 2\^53-1/);
});

test('data blocks must be below nr_data_blocks', () => {
  parseXml(doc('<range_mapping origin_begin="0" data_begin="1000" length="24" time="0"/>'), NUL);
  const e = parseError(doc('<range_mapping origin_begin="0" data_begin="1000" length="25" time="0"/>'));
  assert.equal(e.attribute, 'data_begin');
  assert.match(e.message, /maps data block 1024 but the pool has nr_data_blocks="1024"/);
  assert.equal(parseError(doc('<single_mapping origin_block="0" data_block="1024" time="0"/>')).attribute, 'data_block');
  // thin_dump -m prints nr_data_blocks="0"; reading such a dump needs the check off.
  parseXml(doc('<single_mapping origin_block="0" data_block="1024" time="0"/>'), NUL, { checkDataBlocks: false });
});

test('mappings must increase strictly within a device; devices must be unique', () => {
  const ok = doc('<range_mapping origin_begin="0" data_begin="0" length="5" time="0"/>', '<single_mapping origin_block="5" data_block="9" time="0"/>');
  parseXml(ok, NUL);
  let e = parseError(doc('<single_mapping origin_block="5" data_block="9" time="0"/>', '<single_mapping origin_block="4" data_block="1" time="0"/>'));
  assert.equal(e.line, 4);
  assert.match(e.message, /device 0 must be in increasing origin order/);
  e = parseError(doc('<range_mapping origin_begin="0" data_begin="0" length="5" time="0"/>', '<single_mapping origin_block="4" data_block="9" time="0"/>'));
  assert.match(e.message, /origin block 4 follows a mapping that ends at 4/);
  e = parseError(doc('<single_mapping origin_block="3" data_block="9" time="0"/>', '<single_mapping origin_block="3" data_block="1" time="0"/>'));
  assert.equal(e.attribute, 'origin_block');
  // Order restarts in each device.
  parseXml(`${SB}\n${DEV}<single_mapping origin_block="9" data_block="1" time="0"/></device>\n${DEV.replace('dev_id="0"', 'dev_id="1"')}<single_mapping origin_block="1" data_block="1" time="0"/></device></superblock>`, NUL);
  e = parseError(`${SB}\n${DEV}</device>\n${DEV}</device></superblock>`);
  assert.equal(e.line, 3);
  assert.match(e.message, /duplicate device: dev_id="0"/);
});

test('structure: unknown elements, misplaced elements, text, CDATA', () => {
  let e = parseError(`${SB}\n  <mapping origin="1"/>\n</superblock>`);
  assert.equal(e.line, 2);
  assert.equal(e.column, 3);
  assert.match(e.message, /unknown element <mapping>/);
  assert.match(parseError('<device dev_id="0" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0"/>').message, /unknown element|not allowed|<device>/);
  assert.match(parseError(`${SB}<single_mapping origin_block="0" data_block="0" time="0"/></superblock>`).message, /not allowed inside <superblock>/);
  assert.match(parseError(`${SB}\n${DEV}${DEV}</device></device></superblock>`).message, /<device> is not allowed inside <device>/);
  assert.match(parseError(doc('<single_mapping origin_block="0" data_block="0" time="0"><single_mapping origin_block="1" data_block="1" time="0"/></single_mapping>')).message, /must be empty/);
  assert.match(parseError(`${SB}\n${SB}</superblock></superblock>`).message, /only once/);
  assert.match(parseError(`${SB} stray </superblock>`).message, /unexpected text "stray"/);
  assert.match(parseError(`${SB}<![CDATA[x]]></superblock>`).message, /CDATA/);
  // Comments, an XML declaration and whitespace are fine.
  parseXml(`<?xml version="1.0"?>\n<!-- dump -->\n${SB}\n<!-- x -->\n</superblock>\n`, NUL);
});

test('1.x <def>/<ref> expand in place; errors when misused; allowDefs=false rejects them', () => {
  const xml = `${SB}
  <def name="a">
    <range_mapping origin_begin="10" data_begin="100" length="3" time="1"/>
    <single_mapping origin_block="20" data_block="7" time="0"/>
  </def>
  ${DEV}
    <single_mapping origin_block="2" data_block="1" time="0"/>
    <ref name="a"/>
    <single_mapping origin_block="30" data_block="2" time="0"/>
  </device>
  ${DEV.replace('dev_id="0"', 'dev_id="5"')}
    <ref name="a"/>
  </device>
</superblock>`;
  const rec = new RecordingSink();
  parseXml(xml, rec);
  const m = rec.model();
  assert.deepStrictEqual(m.devices.map((d) => d.mappings.map((x) => [x.origin, x.data, x.time])), [
    [[2, 1, 0], [10, 100, 1], [11, 101, 1], [12, 102, 1], [20, 7, 0], [30, 2, 0]],
    [[10, 100, 1], [11, 101, 1], [12, 102, 1], [20, 7, 0]],
  ]);
  assert.match(parseError(xml.replace('origin_block="30"', 'origin_block="15"')).message, /origin block 15 follows a mapping that ends at 20/);
  assert.match(parseError(xml.replace('<ref name="a"/>\n    <single', '<ref name="b"/>\n    <single')).message, /no earlier <def name="b">/);
  assert.match(parseError(xml.replace('</def>', '</def><def name="a"></def>')).message, /duplicate <def name="a">/);
  assert.match(parseError(`${SB}\n${DEV}<def name="x"></def></device></superblock>`).message, /<def> is not allowed inside <device>/);
  assert.match(parseError(`${SB}<ref name="x"/></superblock>`).message, /<ref> is not allowed inside <superblock>/);
  assert.match(parseError(`${SB}<def/></superblock>`).message, /<def> is missing required attribute name/);
  assert.match(parseError(xml, { allowDefs: false }).message, /unknown element <def>/);
});

test('file name appears in messages and details', async () => {
  const dir = tmpdir();
  try {
    const f = dir.file('bad.xml');
    fs.writeFileSync(f, `${SB}\n<bogus/>\n</superblock>`);
    await assert.rejects(readXml(f, NUL), (e: unknown) => {
      assert.ok(isThinError(e, 'E_PARSE'));
      assert.equal(e.details.file, f);
      assert.equal(e.details.line, 2);
      assert.ok(e.message.startsWith(`${f}:2:1: `), e.message);
      return true;
    });
    await assert.rejects(readXml(dir.file('missing.xml'), NUL), (e: unknown) => isThinError(e, 'E_NOT_FOUND'));
  } finally {
    dir.cleanup();
  }
});

test('chunk boundaries do not matter (1-byte, random, multibyte UTF-8 split in a Buffer)', async () => {
  const model = genModel(42);
  model.sb.uuid = 'μ-ünïcode';
  let xml = '';
  replay(model, new XmlWriter((c) => (xml += c)));
  const whole = new RecordingSink();
  parseXml(xml, whole);
  assert.deepStrictEqual(whole.model(), model);

  const bytes = Buffer.from(xml, 'utf8');
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + ((i * 7919) % 97);
    pieces.push(bytes.subarray(i, i + n));
    i += n;
  }
  const rec = new RecordingSink();
  await readXml(Readable.from(pieces), rec);
  assert.deepStrictEqual(rec.model(), model);

  const one = new RecordingSink();
  const r = new XmlReader(one);
  for (const ch of xml.slice(0, 20000)) r.write(ch);
  r.write(xml.slice(20000));
  r.end();
  assert.deepStrictEqual(one.model(), model);
});

test('after an error the reader stays failed', () => {
  const r = new XmlReader(NUL);
  assert.throws(() => r.write(`${SB}<x/>`), (e: unknown) => isThinError(e, 'E_PARSE'));
  assert.throws(() => r.write('</superblock>'), /unknown element <x>/);
  assert.throws(() => r.end(), /unknown element <x>/);
});

test('memory stays bounded while streaming 2 million mappings', async () => {
  const N = 2_000_000;
  function* gen() {
    yield `<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="${N}">\n  <device dev_id="0" mapped_blocks="${N}" transaction="0" creation_time="0" snap_time="1">\n`;
    let s = '';
    for (let i = 0; i < N; i++) {
      s += `    <single_mapping origin_block="${i * 2}" data_block="${i}" time="0"/>\n`;
      if (s.length > 65536) {
        yield s;
        s = '';
      }
    }
    yield `${s}  </device>\n</superblock>\n`;
  }
  global.gc?.();
  const base = process.memoryUsage().heapUsed;
  let peak = 0;
  let count = 0;
  let outChars = 0;
  const w = new XmlWriter((c) => (outChars += c.length));
  await readXml(Readable.from(gen()), {
    superblock: (s) => w.superblock(s),
    device: (d) => w.device(d),
    mapping: (o, d, l, t) => {
      count += l;
      w.mapping(o, d, l, t);
      if (count % 65536 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
    },
    endDevice: () => w.endDevice(),
    endSuperblock: () => w.endSuperblock(),
  });
  assert.equal(count, N);
  assert.ok(outChars > N * 60);
  // The document is ~150 MB; holding the mappings would need far more than this.
  assert.ok(peak - base < 64 * 1024 * 1024, `heap grew by ${((peak - base) / 1048576).toFixed(1)} MiB`);
});
