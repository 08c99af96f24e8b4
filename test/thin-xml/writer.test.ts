/**
 * Dump writers on fixed inputs. The golden texts are what thin_dump 0.9.0 printed for the
 * spec's example (section 10.4, restored with thin_restore 0.9.0); oracle-*.test.ts compares
 * random models with the live tools.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError } from '../../src/errors';
import type { MetadataSink, SuperblockInfo } from '../../src/thin/xml/types';
import { HumanReadableWriter, JsonWriter, XmlWriter, type OutputFn } from '../../src/thin/xml/writer';
import { Rand } from '../../support/random';
import { genModel, replay } from '../helpers/thin-model';
import { SPEC_EXAMPLE_DEVICES } from '../helpers/spec-example';

const SB: SuperblockInfo = { uuid: '', time: 1, transaction: 2, flags: 0, version: 1, dataBlockSize: 128, nrDataBlocks: 1024 };

/** The spec example, fed as single mappings so every run must be merged by the writer. */
function example(sink: MetadataSink): void {
  sink.superblock(SB);
  sink.device({ devId: 0, mappedBlocks: 111, transaction: 0, creationTime: 0, snapTime: 1 });
  for (let i = 0; i < 100; i++) sink.mapping(i, i, 1, 0);
  sink.mapping(200, 150, 1, 0);
  sink.mapping(300, 160, 4, 1);
  sink.mapping(304, 164, 6, 1);
  sink.endDevice();
  sink.device({ devId: 1, mappedBlocks: 101, transaction: 1, creationTime: 1, snapTime: 1 });
  sink.mapping(0, 0, 50, 0);
  sink.mapping(50, 200, 1, 1);
  sink.mapping(51, 51, 49, 0);
  sink.mapping(200, 150, 1, 0);
  sink.endDevice();
  sink.endSuperblock();
}

function collect(make: (out: OutputFn) => MetadataSink, feed: (s: MetadataSink) => void): { text: string; chunks: string[] } {
  const chunks: string[] = [];
  feed(make((c) => chunks.push(c)));
  return { text: chunks.join(''), chunks };
}

const EXAMPLE_XML = `<superblock uuid="" time="1" transaction="2" flags="0" version="1" data_block_size="128" nr_data_blocks="1024">
` + SPEC_EXAMPLE_DEVICES;

const EXAMPLE_HUMAN = `begin superblock: "", 1, 2, 0, 1, 128, 1024
device: 0
mapped_blocks: 111
transaction: 0
creation time: 0
snap time: 1
    (0..99) -> (0..99), 0
    200 -> 150, 0
    (300..309) -> (160..169), 1

device: 1
mapped_blocks: 101
transaction: 1
creation time: 1
snap time: 1
    (0..49) -> (0..49), 0
    50 -> 200, 1
    (51..99) -> (51..99), 0
    200 -> 150, 0

end superblock
`;

test('XML: the spec example exactly as thin_dump 0.9.0 prints it', () => {
  assert.equal(collect((o) => new XmlWriter(o), example).text, EXAMPLE_XML);
});

test('human_readable: the spec example exactly as thin_dump -f human_readable 0.9.0 prints it', () => {
  assert.equal(collect((o) => new HumanReadableWriter(o), example).text, EXAMPLE_HUMAN);
});

test('merging: runs join across calls only when origin, data and time all continue', () => {
  const out = collect((o) => new XmlWriter(o), (s) => {
    s.superblock(SB);
    s.device({ devId: 3, mappedBlocks: 9, transaction: 0, creationTime: 0, snapTime: 0 });
    s.mapping(0, 10, 2, 5);
    s.mapping(2, 12, 1, 5); // joins
    s.mapping(3, 13, 1, 6); // time changes
    s.mapping(4, 20, 1, 6); // data jumps
    s.mapping(6, 21, 1, 6); // origin jumps
    s.mapping(7, 22, 0, 6); // empty calls are ignored
    s.mapping(7, 22, 2, 6); // joins the previous single
    s.endDevice();
    s.device({ devId: 4, mappedBlocks: 1, transaction: 0, creationTime: 0, snapTime: 0 });
    s.mapping(9, 23, 1, 6); // a new device never continues the last one
    s.endDevice();
    s.endSuperblock();
  }).text;
  assert.equal(
    out.split('\n').filter((l) => l.includes('mapping')).join('\n'),
    [
      '    <range_mapping origin_begin="0" data_begin="10" length="3" time="5"/>',
      '    <single_mapping origin_block="3" data_block="13" time="6"/>',
      '    <single_mapping origin_block="4" data_block="20" time="6"/>',
      '    <range_mapping origin_begin="6" data_begin="21" length="3" time="6"/>',
      '    <single_mapping origin_block="9" data_block="23" time="6"/>',
    ].join('\n'),
  );
});

test('out-of-order or overlapping mappings are refused, not silently merged', () => {
  const w = new XmlWriter(() => {});
  w.superblock(SB);
  w.device({ devId: 0, mappedBlocks: 0, transaction: 0, creationTime: 0, snapTime: 0 });
  w.mapping(10, 0, 5, 0);
  assert.throws(() => w.mapping(12, 100, 1, 0), (e: unknown) => isThinError(e, 'E_INVALID'));
  const v = new XmlWriter(() => {});
  assert.throws(() => v.mapping(0, 0, 1, 0), (e: unknown) => isThinError(e, 'E_INVALID'));
});

test('buffering: output arrives in pieces of at least flushBytes, and nothing is lost', () => {
  const model = genModel(99, { maxMappings: 3000 });
  let whole = '';
  replay(model, new XmlWriter((c) => (whole += c)));
  for (const flushBytes of [1, 100, 4096, 64 * 1024]) {
    const chunks: string[] = [];
    const w = new XmlWriter((c) => chunks.push(c), { flushBytes });
    w.superblock(model.sb);
    if (flushBytes > 200) assert.equal(chunks.length, 0, 'small output is held until the threshold');
    replay({ ...model, sb: model.sb }, {
      superblock: () => {},
      device: (d) => w.device(d),
      mapping: (o, d, l, t) => w.mapping(o, d, l, t),
      endDevice: () => w.endDevice(),
      endSuperblock: () => w.endSuperblock(),
    }, new Rand(3));
    assert.equal(chunks.join(''), whole);
    for (const c of chunks.slice(0, -1)) assert.ok(c.length >= flushBytes);
  }
  // The default threshold is 64 KiB: a 10 MB dump arrives in ~150 pieces, not 10^5.
  const chunks: string[] = [];
  const w = new XmlWriter((c) => chunks.push(c));
  w.superblock(SB);
  w.device({ devId: 0, mappedBlocks: 0, transaction: 0, creationTime: 0, snapTime: 0 });
  for (let i = 0; i < 150_000; i++) w.mapping(i * 2, i, 1, 0);
  w.endDevice();
  w.endSuperblock();
  const total = chunks.reduce((n, c) => n + c.length, 0);
  assert.ok(chunks.length <= Math.ceil(total / 65536) + 1, `${chunks.length} chunks for ${total} chars`);
});

test('uuid is escaped in XML', () => {
  const out = collect((o) => new XmlWriter(o), (s) => {
    s.superblock({ ...SB, uuid: 'a"<&>' });
    s.endSuperblock();
  }).text;
  assert.equal(out, '<superblock uuid="a&quot;&lt;&amp;&gt;" time="1" transaction="2" flags="0" version="1" data_block_size="128" nr_data_blocks="1024">\n</superblock>\n');
});

test('JSON: documented shape, runs merged, valid for empty pools and devices', () => {
  const doc = JSON.parse(collect((o) => new JsonWriter(o), example).text);
  assert.deepStrictEqual(doc.superblock, { uuid: '', time: 1, transaction: 2, flags: 0, version: 1, data_block_size: 128, nr_data_blocks: 1024 });
  assert.equal(doc.devices.length, 2);
  assert.deepStrictEqual(
    { ...doc.devices[0], mappings: undefined },
    { dev_id: 0, mapped_blocks: 111, transaction: 0, creation_time: 0, snap_time: 1, mappings: undefined },
  );
  assert.deepStrictEqual(doc.devices[0].mappings, [
    { origin_begin: 0, data_begin: 0, length: 100, time: 0 },
    { origin_begin: 200, data_begin: 150, length: 1, time: 0 },
    { origin_begin: 300, data_begin: 160, length: 10, time: 1 },
  ]);
  assert.equal(doc.devices[1].mappings.length, 4);

  const empty = JSON.parse(collect((o) => new JsonWriter(o), (s) => {
    s.superblock({ ...SB, metadataSnap: 5 });
    s.endSuperblock();
  }).text);
  assert.deepStrictEqual(empty.devices, []);
  assert.equal(empty.superblock.metadata_snap, 5);

  const bare = JSON.parse(collect((o) => new JsonWriter(o), (s) => {
    s.superblock(SB);
    s.device({ devId: 1, mappedBlocks: 0, transaction: 0, creationTime: 0, snapTime: 0 });
    s.endDevice();
    s.endSuperblock();
  }).text);
  assert.deepStrictEqual(bare.devices[0].mappings, []);

  // A random model round-trips through JSON with the same runs the XML writer prints.
  const model = genModel(5);
  const j = JSON.parse(collect((o) => new JsonWriter(o), (s) => replay(model, s, new Rand(1))).text);
  const singles = j.devices.map((d: { mappings: { origin_begin: number; data_begin: number; length: number; time: number }[] }) =>
    d.mappings.flatMap((m) => Array.from({ length: m.length }, (_, i) => ({ origin: m.origin_begin + i, data: m.data_begin + i, time: m.time }))),
  );
  assert.deepStrictEqual(singles, model.devices.map((d) => d.mappings));
});
